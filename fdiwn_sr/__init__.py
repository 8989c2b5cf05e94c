"""fdiwn-sr: FDIWN lightweight super-resolution (Gao et al., AAAI 2022) for PyTorch.

``load_model(scale, variant)`` gives an [`Upscaler`][fdiwn_sr.Upscaler]; ``upscale(image)`` is the
one-call form. ``list_models()`` / ``list_pretrained()`` say what exists. Every
tensor on the public surface holds values in [0, 1].
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any, overload

import numpy as np
import torch
from PIL import Image

from . import checkpoints
from ._version import __version__
from .errors import CheckpointError, IntegrityError, WeightsError
from .images import ImageLike
from .network import FDIWN, VariantName, check_config
from .registry import ModelInfo, list_models, list_pretrained
from .upscaler import PILInput, PILInputs, Result, UpscaleOptions, Upscaler, resolve_device
from .video import upscale_video  # PyAV itself is imported only when a video is upscaled
from .weights import resolve_weights

__all__ = [
    "FDIWN",
    "CheckpointError",
    "IntegrityError",
    "ModelInfo",
    "Upscaler",
    "VariantName",
    "WeightsError",
    "__version__",
    "list_models",
    "list_pretrained",
    "load_model",
    "upscale",
    "upscale_video",
]


def load_model(
    scale: int = 4,
    variant: VariantName = "fdiwn",
    *,
    weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    backend: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
) -> Upscaler:
    """The one door to a ready network: weights found, validated, folded, on ``device``.

    Without ``weights`` the pretrained file is resolved: the local cache, then the
    Hugging Face Hub, then the authors' upstream copy, every byte checked against the
    sha256 in the manifest (see [Pretrained weights][pretrained-weights]). Scale and variant
    are read from the file and must agree with the request. The scale, variant and
    device are checked before any weights are looked for.

    Leaves the host process as it is: no malloc, thread or torch setting changes. On
    the CPU the runner keeps the heap memory its calls need while it lives, so the
    feature maps of one call serve the next (the ``HeapReserve`` in
    [Performance][performance]); a program that owns its process may instead tune
    malloc once with ``fdiwn_sr.allocator.keep_freed_memory()``, as the command does.

    Args:
        scale: Upscaling factor: 2, 3 or 4.
        variant: ``"fdiwn"`` (pretrained weights exist) or ``"fdiwn-m"`` (pass ``weights``).
        weights: A local file to use instead of the pretrained one: our safetensors or
            the authors' ``.pt``.
        device: Where to run; None picks CUDA, then Apple's MPS, then the CPU.
        dtype: ``torch.float32`` (None), or ``torch.float16`` / ``torch.bfloat16`` to run
            under autocast (statistics stay in float32).
        backend: ``"torch-fused"``, ``"onnxruntime"`` or ``"torch"``; None picks the fastest
            exact one for the device and dtype (see [Performance][performance]).
        revision: The Hub revision (branch, tag or commit) to download from.
        cache_dir: The cache folder for this call (default ``FDIWN_SR_HOME``, else the
            platform's user cache folder).
        offline: True never downloads; None (the default) follows ``FDIWN_SR_OFFLINE`` and
            ``HF_HUB_OFFLINE``.

    Returns:
        The ready network, to call [`upscale`][fdiwn_sr.Upscaler.upscale] on.

    Raises:
        ValueError: If the scale, variant, device, dtype or backend is not valid here.
        FileNotFoundError: If ``weights`` does not exist.
        CheckpointError: If the weights file is unreadable, not FDIWN's, or for another
            scale or variant.
        WeightsError: If the pretrained weights cannot be obtained (offline with nothing
            cached, no pretrained weights for the variant, every source failed).
        IntegrityError: If downloaded bytes do not match the manifest's sha256.
    """
    check_config(scale, variant)
    device = resolve_device(device)  # a missing GPU or a typo fails before any download
    path = resolve_weights(scale, variant, weights=weights, revision=revision, cache_dir=cache_dir, offline=offline)
    return Upscaler(checkpoints.load_network(path, scale, variant), device, dtype=dtype, backend=backend)


_UPSCALE_OPTIONS = tuple(UpscaleOptions.__annotations__)


@overload
def upscale(image: PILInput, scale: int = ..., variant: VariantName = ..., **kw: Any) -> Image.Image: ...
@overload
def upscale(image: np.ndarray, scale: int = ..., variant: VariantName = ..., **kw: Any) -> np.ndarray: ...
@overload
def upscale(image: torch.Tensor, scale: int = ..., variant: VariantName = ..., **kw: Any) -> torch.Tensor: ...
@overload
def upscale(image: PILInputs, scale: int = ..., variant: VariantName = ..., **kw: Any) -> list[Image.Image]: ...
@overload
def upscale(
    image: Sequence[np.ndarray], scale: int = ..., variant: VariantName = ..., **kw: Any
) -> list[np.ndarray]: ...
@overload
def upscale(
    image: Sequence[torch.Tensor], scale: int = ..., variant: VariantName = ..., **kw: Any
) -> list[torch.Tensor]: ...
@overload
def upscale(
    image: list[Any] | tuple[Any, ...], scale: int = ..., variant: VariantName = ..., **kw: Any
) -> list[Result]: ...
def upscale(
    image: ImageLike | Sequence[ImageLike], scale: int = 4, variant: VariantName = "fdiwn", **kw: Any
) -> Result | list[Result]:
    """Upscale with a model loaded once per (scale, variant, options) and kept for later calls.

    The model comes from [`load_model`][fdiwn_sr.load_model] and is cached, four at most;
    it is loaded (and on first use downloaded) before the image is checked. A weights
    file changed on disk under the same path is not read again.

    Args:
        image: A PIL image, a numpy array, a torch tensor in [0, 1], a file path, or a
            list of these (see [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale]).
        scale: Upscaling factor: 2, 3 or 4.
        variant: ``"fdiwn"`` or ``"fdiwn-m"``.
        **kw: [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale]'s options (``tile``,
            ``tile_overlap``, ``batch_size``, ``progress``) and
            [`load_model`][fdiwn_sr.load_model]'s (``weights``, ``device``, ``dtype``,
            ``backend``, ``revision``, ``cache_dir``, ``offline``).

    Returns:
        What [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale] returns: a PIL image for a PIL
        image or a path, an array for an array, a tensor for a tensor, a list for a list.

    Raises:
        ValueError: For bad input or options (see [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale]).
        TypeError: For an unsupported input type or dtype.
        FileNotFoundError: If a path or ``weights`` does not exist.
        WeightsError: If the pretrained weights cannot be obtained.
    """
    options = {k: kw.pop(k) for k in _UPSCALE_OPTIONS if k in kw}
    return _cached_model(scale, variant, **kw).upscale(image, **options)


@functools.lru_cache(maxsize=4)
def _cached_model(scale: int, variant: VariantName, **kw: Any) -> Upscaler:
    return load_model(scale, variant, **kw)

"""fdiwn-sr: FDIWN lightweight super-resolution (Gao et al., AAAI 2022) for PyTorch.

``load_model(scale, variant)`` gives an :class:`Upscaler`; ``upscale(image)`` is the
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

    ``weights`` is our safetensors or the authors' ``.pt``; without it the
    pretrained file is resolved (cache, then the Hub). Scale and variant are
    read from the file and must agree with the request.
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

    Returns what :meth:`Upscaler.upscale` returns: a PIL image for a PIL image
    or a path, an array for an array, a tensor (in [0, 1]) for a tensor, a
    list for a list. ``kw`` takes :meth:`Upscaler.upscale`'s options (tile,
    tile_overlap, batch_size, progress) and :func:`load_model`'s (weights,
    device, dtype, ...).
    """
    options = {k: kw.pop(k) for k in _UPSCALE_OPTIONS if k in kw}
    return _cached_model(scale, variant, **kw).upscale(image, **options)


@functools.lru_cache(maxsize=4)
def _cached_model(scale: int, variant: VariantName, **kw: Any) -> Upscaler:
    return load_model(scale, variant, **kw)

"""fdiwn-sr: FDIWN lightweight super-resolution (Gao et al., AAAI 2022) for PyTorch."""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

from . import checkpoints
from .errors import CheckpointError, IntegrityError, WeightsError
from .images import ImageLike
from .network import FDIWN, check_config
from .upscaler import Upscaler, resolve_device
from .video import upscale_video  # PyAV itself is imported only when a video is upscaled
from .weights import resolve_weights

__version__ = "0.1.0"

__all__ = [
    "FDIWN",
    "CheckpointError",
    "IntegrityError",
    "Upscaler",
    "WeightsError",
    "__version__",
    "load_model",
    "upscale",
    "upscale_video",
]


def load_model(
    scale: int = 4,
    variant: str = "fdiwn",
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


_UPSCALE_OPTIONS = ("tile", "tile_overlap", "batch_size", "progress")


def upscale(image: ImageLike | list[ImageLike], scale: int = 4, variant: str = "fdiwn", **kw: Any) -> Any:
    """Upscale with a model loaded once per (scale, variant, options) and kept for later calls.

    ``kw`` takes :meth:`Upscaler.upscale`'s options (tile, tile_overlap,
    batch_size, progress) and :func:`load_model`'s (weights, device, dtype, ...).
    """
    options = {k: kw.pop(k) for k in _UPSCALE_OPTIONS if k in kw}
    return _cached_model(scale, variant, **kw).upscale(image, **options)


@functools.lru_cache(maxsize=4)
def _cached_model(scale: int, variant: str, **kw: Any) -> Upscaler:
    return load_model(scale, variant, **kw)

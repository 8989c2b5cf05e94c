"""fdiwn-sr: FDIWN lightweight super-resolution (Gao et al., AAAI 2022) for PyTorch."""

from __future__ import annotations

import os

import torch

from . import checkpoints
from .errors import CheckpointError, IntegrityError, WeightsError
from .network import FDIWN, check_config
from .upscaler import Upscaler
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
    path = resolve_weights(scale, variant, weights=weights, revision=revision, cache_dir=cache_dir, offline=offline)
    return Upscaler(checkpoints.load_network(path, scale, variant), device, dtype=dtype, backend=backend)

"""fdiwn-sr: FDIWN lightweight super-resolution (Gao et al., AAAI 2022) for PyTorch."""

from __future__ import annotations

import os

import torch

from . import checkpoints
from .errors import CheckpointError, IntegrityError, WeightsError
from .network import FDIWN, check_config
from .upscaler import Upscaler

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
) -> Upscaler:
    """The one door to a ready network: weights validated, folded, on ``device``.

    ``weights`` is our safetensors or the authors' ``.pt``; scale and variant
    are read from it and must agree with the request.
    """
    check_config(scale, variant)
    if weights is None:
        raise WeightsError("pretrained download is not available yet: pass weights=PATH")
    return Upscaler(checkpoints.load_network(weights, scale, variant), device)

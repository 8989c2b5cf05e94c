"""Retrain and fine-tune FDIWN: MATLAB bicubic degradation, patch data, a resumable loop, DDP.

Imports torch's data and distributed machinery, so ``import fdiwn_sr`` does not
pull it in; use ``from fdiwn_sr.training import train, resolve_config``.
"""

from .config import TrainConfig, resolve_config
from .data import PatchDataset, PatchSampler, load_validation
from .imresize import imresize
from .trainer import TrainResult, initial_model, train, validate

__all__ = [
    "PatchDataset",
    "PatchSampler",
    "TrainConfig",
    "TrainResult",
    "imresize",
    "initial_model",
    "load_validation",
    "resolve_config",
    "train",
    "validate",
]

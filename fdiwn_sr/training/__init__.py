"""Retrain and fine-tune FDIWN: MATLAB bicubic degradation, patch data, a resumable loop, DDP.

Imports torch's data and distributed machinery, so ``import fdiwn_sr`` does not
pull it in; use ``from fdiwn_sr.training import train, resolve_config``. Only the
configuration (the CLI builds its flags from it) and ``imresize`` are imported with
this package; the loop and the data pipeline load on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import TrainConfig, resolve_config
from .imresize import imresize  # bound here, or the submodule of the same name would shadow the function

if TYPE_CHECKING:
    from .data import PatchDataset, PatchSampler, load_validation
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

_LAZY = {
    "PatchDataset": "data",
    "PatchSampler": "data",
    "load_validation": "data",
    "TrainResult": "trainer",
    "initial_model": "trainer",
    "train": "trainer",
    "validate": "trainer",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)

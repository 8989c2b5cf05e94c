"""Training configuration: one dataclass, filled from defaults, then a TOML file, then flags.

The resolved configuration is written into the run folder as TOML (paths made
absolute), so ``fdiwn-sr train --config RUN/config.toml`` repeats a run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ..network import SCALES, VARIANTS

__all__ = ["PRETRAINED", "TrainConfig", "add_arguments", "overrides_from_namespace", "read_toml", "resolve_config"]

PRETRAINED = "pretrained"


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


def _is_path(name: str, value: Any) -> bool:
    """A path option holding a path (not a keyword such as ``init = "pretrained"``)."""
    meta = _FIELDS[name].metadata
    return bool(meta.get("path")) and isinstance(value, str) and value not in meta.get("keywords", ())


@dataclass
class TrainConfig:
    """Everything a run needs. Defaults follow the paper where it says (L1, Adam 2e-4,
    48 x 48 LR patches, batch 16) and the EDSR family's recipe where it does not."""

    # model
    scale: int = _opt(4, "upscaling factor", choices=SCALES)
    variant: str = _opt("fdiwn", "network variant", choices=tuple(VARIANTS))
    init: str | None = _opt(
        None,
        "weights to start from: 'pretrained' (the released fdiwn), our safetensors or the authors' .pt; "
        "fdiwn weights initialise fdiwn-m from their first two groups",
        path=True,
        keywords=(PRETRAINED,),
    )
    # data
    train_hr: str | None = _opt(None, "folder of high-resolution training images", path=True)
    train_lr: str | None = _opt(None, "folder of matching LR images (default: MATLAB bicubic from HR)", path=True)
    cache_dir: str | None = _opt(None, "folder to cache decoded HR and bicubic LR arrays in", path=True)
    patch_size: int = _opt(48, "LR patch side in pixels")
    batch_size: int = _opt(16, "patches per step and per process")
    workers: int = _opt(4, "DataLoader worker processes per training process")
    augment: bool = _opt(True, "random flips and 90-degree rotations")
    # validation
    val_hr: str | None = _opt(None, "folder of HR validation images", path=True)
    val_lr: str | None = _opt(None, "folder of matching LR validation images (default: MATLAB bicubic)", path=True)
    val_every: int = _opt(1000, "validate every this many steps")
    val_at_start: bool = _opt(True, "validate before the first step of a new run (the fine-tuning baseline)")
    # optimisation
    steps: int = _opt(500_000, "total optimiser steps")
    lr: float = _opt(2e-4, "Adam learning rate")
    schedule: str = _opt("step", "learning-rate schedule", choices=("step", "cosine", "constant"))
    lr_step: int = _opt(200_000, "step schedule: multiply the rate by lr_gamma every this many steps")
    lr_gamma: float = _opt(0.5, "step schedule: the factor")
    min_lr: float = _opt(0.0, "cosine schedule: the final rate")
    weight_decay: float = _opt(0.0, "Adam weight decay")
    grad_clip: float = _opt(0.0, "clip the gradient norm to this (0: off)")
    amp: bool = _opt(True, "mixed precision (float16) on CUDA; ignored on CPU")
    ema: float = _opt(0.0, "decay of an exponential moving average of the weights, e.g. 0.999 (0: off)")
    teacher: str | None = _opt(
        None, "teacher weights for a distillation loss: 'pretrained' or a file", path=True, keywords=(PRETRAINED,)
    )
    distill_weight: float = _opt(1.0, "weight of the L1 distance to the teacher's output")
    # run
    out_dir: str = _opt("runs/fdiwn", "run folder: config, log, checkpoints, exported weights", path=True)
    seed: int = _opt(0, "seed of the initialisation and of every random patch")
    deterministic: bool = _opt(False, "deterministic kernels (slower; bit-exact reruns on one device)")
    device: str | None = _opt(None, "torch device (default: the local CUDA device if any, else cpu)")
    checkpoint_every: int = _opt(1000, "write the resumable checkpoint every this many steps")
    log_every: int = _opt(100, "log the mean training loss every this many steps")
    stop_after: int | None = _opt(None, "stop this invocation after this many steps (time-limited jobs; resume later)")
    progress: bool = _opt(True, "show a tqdm progress bar")
    tensorboard: bool = _opt(True, "also log to TensorBoard when it is installed")

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _checked(f.name, getattr(self, f.name), f.type))
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {list(choices)}, got {getattr(self, f.name)!r}")
        positive = ("patch_size", "batch_size", "val_every", "steps", "lr_step", "checkpoint_every", "log_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.stop_after is not None and self.stop_after <= 0:
            raise ValueError(f"stop_after must be positive, got {self.stop_after}")
        for name in ("lr", "lr_gamma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("workers", "min_lr", "weight_decay", "grad_clip", "distill_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")

    def to_toml(self) -> str:
        """TOML text of the set fields (TOML has no null: unset options are left out)."""
        lines = [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in asdict(self).items() if v is not None]
        return "\n".join(lines) + "\n"


def _checked(name: str, value: Any, annotation: str) -> Any:
    """Type-check one value against its field's annotation (TOML and Python callers alike)."""
    optional = annotation.endswith("| None")
    kind = annotation.split("|")[0].strip()
    if value is None:
        if optional:
            return None
        raise TypeError(f"{name} must be set (a {kind})")
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise TypeError(f"{name} must be a {kind}, got {type(value).__name__} {value!r}")
    return value


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def read_toml(path: str | Path) -> dict[str, Any]:
    """Options from a TOML file; relative paths in it are taken relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from e
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {unknown}; known: {sorted(_FIELDS)}")
    for name, value in data.items():
        if _is_path(name, value):
            data[name] = str(path.parent / Path(value).expanduser())
    return data


def resolve_config(config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then ``config_file``, then ``overrides`` (None means "not given"); paths made absolute."""
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; known: {sorted(_FIELDS)}")
    values = read_toml(config_file) if config_file is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig(**values)
    for name in _FIELDS:
        value = getattr(config, name)
        if _is_path(name, value):
            setattr(config, name, str(Path(value).expanduser().resolve()))
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option (``--patch-size``), defaulting to "not given" so the TOML file's value stands."""
    for name, f in _FIELDS.items():
        flag = "--" + name.replace("_", "-")
        kind = f.type.split("|")[0].strip()
        default = f.default if f.default is not MISSING else None
        help_text = f"{f.metadata['help']} (default: {default})"
        if kind == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(
                flag,
                dest=name,
                type={"int": int, "float": float}.get(kind, str),
                choices=f.metadata.get("choices"),
                default=None,
                metavar=name.upper() if kind != "str" or f.metadata.get("path") else None,
                help=help_text,
            )


def overrides_from_namespace(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}

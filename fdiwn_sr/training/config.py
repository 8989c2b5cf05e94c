"""Training configuration: one dataclass, filled from defaults, then a TOML file, then flags.

The resolved configuration is written into the run folder as TOML (paths made
absolute), so ``fdiwn-sr train --config RUN/config.toml`` repeats a run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import re
import sys
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ..network import SCALES, VARIANTS

__all__ = ["PRETRAINED", "TrainConfig", "add_arguments", "overrides_from_namespace", "read_toml", "resolve_config"]

PRETRAINED = "pretrained"


# What the flags and the path handling need to know beyond a field's type and default.
_CHOICES: dict[str, tuple[Any, ...]] = {
    "scale": SCALES,
    "variant": tuple(VARIANTS),
    "schedule": ("step", "cosine", "constant"),
}
_PATHS = {"init", "train_hr", "train_lr", "cache_dir", "val_hr", "val_lr", "teacher", "out_dir"}
_KEYWORDS = {"init": (PRETRAINED,), "teacher": (PRETRAINED,)}  # path options that may hold a keyword instead


def _is_path(name: str, value: Any) -> bool:
    """A path option holding a path (not a keyword such as ``init = "pretrained"``)."""
    return name in _PATHS and isinstance(value, str) and value not in _KEYWORDS.get(name, ())


@dataclass
class TrainConfig:
    """Everything a run needs, one field per option.

    Defaults follow the paper where it says (L1, Adam 2e-4, 48 x 48 LR patches, batch 16)
    and the EDSR family's recipe where it does not. Each field is also a flag of
    ``fdiwn-sr train`` (``patch_size`` as ``--patch-size``), whose help is the text below,
    and a key of the TOML file read by [`resolve_config`][fdiwn_sr.training.resolve_config].

    Args:
        scale: Upscaling factor: 2, 3 or 4.
        variant: Network variant: ``fdiwn`` or ``fdiwn-m``.
        init: Weights to start from: ``pretrained`` (the released fdiwn), our safetensors or the authors' .pt; fdiwn
            weights initialise fdiwn-m from their first two groups. None: random initialisation.
        train_hr: Folder of high-resolution training images.
        train_lr: Folder of matching LR images (default: MATLAB bicubic from HR).
        cache_dir: Folder to cache decoded HR and bicubic LR arrays in.
        patch_size: LR patch side in pixels.
        batch_size: Patches per step and per process.
        workers: DataLoader worker processes per training process.
        augment: Random flips and 90-degree rotations.
        val_hr: Folder of HR validation images.
        val_lr: Folder of matching LR validation images (default: MATLAB bicubic).
        val_every: Validate every this many steps.
        val_at_start: Validate before the first step of a new run (the fine-tuning baseline).
        steps: Total optimiser steps.
        lr: Adam learning rate.
        schedule: Learning-rate schedule: ``step``, ``cosine`` or ``constant``.
        lr_step: Step schedule: multiply the rate by lr_gamma every this many steps.
        lr_gamma: Step schedule: the factor.
        min_lr: Cosine schedule: the final rate.
        weight_decay: Adam weight decay.
        grad_clip: Clip the gradient norm to this (0: off).
        amp: Mixed precision (float16) on CUDA; ignored on CPU.
        ema: Decay of an exponential moving average of the weights, e.g. 0.999 (0: off).
        teacher: Teacher weights for a distillation loss: ``pretrained`` or a file.
        distill_weight: Weight of the L1 distance to the teacher's output.
        out_dir: Run folder: config, log, checkpoints, exported weights.
        seed: Seed of the initialisation and of every random patch.
        deterministic: Deterministic kernels (slower; bit-exact reruns on one device).
        device: Torch device (default: the local CUDA device if any, else cpu).
        checkpoint_every: Write the resumable checkpoint every this many steps.
        log_every: Log the mean training loss every this many steps.
        stop_after: Stop this invocation after this many steps (time-limited jobs; resume later).
        progress: Show a tqdm progress bar.
        tensorboard: Also log to TensorBoard when it is installed.

    Raises:
        TypeError: If a value is not of its field's type (or is None where the field needs one).
        ValueError: If a value is outside its field's choices or range.
    """

    # model
    scale: int = 4
    variant: str = "fdiwn"
    init: str | None = None
    # data
    train_hr: str | None = None
    train_lr: str | None = None
    cache_dir: str | None = None
    patch_size: int = 48
    batch_size: int = 16
    workers: int = 4
    augment: bool = True
    # validation
    val_hr: str | None = None
    val_lr: str | None = None
    val_every: int = 1000
    val_at_start: bool = True
    # optimisation
    steps: int = 500_000
    lr: float = 2e-4
    schedule: str = "step"
    lr_step: int = 200_000
    lr_gamma: float = 0.5
    min_lr: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    amp: bool = True
    ema: float = 0.0
    teacher: str | None = None
    distill_weight: float = 1.0
    # run
    out_dir: str = "runs/fdiwn"
    seed: int = 0
    deterministic: bool = False
    device: str | None = None
    checkpoint_every: int = 1000
    log_every: int = 100
    stop_after: int | None = None
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _checked(f.name, getattr(self, f.name), f.type))
        for f in fields(self):
            choices = _CHOICES.get(f.name)
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
        """The configuration as TOML text, readable by [`resolve_config`][fdiwn_sr.training.resolve_config].

        Returns:
            One ``key = value`` line per set field (TOML has no null: unset options are left out).
        """
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


def _field_help(docstring: str) -> dict[str, str]:
    """Each field's text from the class docstring's ``Args:`` section: the one source of the reference and the flags."""
    section = inspect.cleandoc(docstring).split("\nArgs:\n", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"^    (\w+): (.+(?:\n {8}.+)*)", section, re.M))


_HELP = {name: " ".join(text.replace("``", "'").split()) for name, text in _field_help(TrainConfig.__doc__).items()}


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
    """Defaults, then ``config_file``, then ``overrides``; paths made absolute.

    Args:
        config_file: A TOML file of options; relative paths in it are relative to the file.
        **overrides: Options as keyword arguments (``steps=5000``); None means "not given".

    Returns:
        The validated configuration.

    Raises:
        FileNotFoundError: If ``config_file`` does not exist.
        ValueError: If an option is unknown, the TOML is invalid, or a value is out of range.
        TypeError: If a value is of the wrong type.
    """
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
        help_text = f"{_HELP[name]} (default: {default})"
        if kind == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(
                flag,
                dest=name,
                type={"int": int, "float": float}.get(kind, str),
                choices=_CHOICES.get(name),
                default=None,
                metavar=name.upper() if kind != "str" or name in _PATHS else None,
                help=help_text,
            )


def overrides_from_namespace(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}

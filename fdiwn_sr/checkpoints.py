"""Authors' ``.pt`` checkpoints <-> our safetensors: key map, validation, metadata.

Knows nothing of URLs or caches: it turns bytes on disk into a validated
state dict for :class:`~fdiwn_sr.network.FDIWN`, and back.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .atomic import atomic_write_bytes
from .errors import CheckpointError
from .network import FDIWN, SCALES, VARIANTS

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "StateDict",
    "build",
    "convert",
    "detect",
    "from_authors",
    "is_authors_layout",
    "load_network",
    "read_authors_pt",
    "read_checkpoint",
    "read_safetensors",
    "save_safetensors",
    "sha256_file",
]

FORMAT = "fdiwn-sr"
FORMAT_VERSION = "1"

StateDict = dict[str, torch.Tensor]

# Authors' key -> ours, applied in order. Context (top level, FSWG, WDIB, unit)
# decides what a name like ``conv1`` or ``rb1`` means.
_Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]
_RULES: list[_Rule] = [
    (re.compile(p), r)
    for p, r in [
        (r"^Sub_mean\.", "sub_mean."),
        (r"^Add_mean\.", "add_mean."),
        (r"^conv1\.", "trunk_tail."),
        (r"^UP1\.0\.", "trunk_up."),
        (r"^conv2\.", "skip_conv."),
        (r"^UP2\.0\.", "skip_up."),
        (r"^Li(\d)\.", lambda m: f"fswg.{int(m[1]) - 1}."),
        (r"^(fswg\.\d+)\.MY(\d)\.", r"\1.wdib\2."),
        (r"^(fswg\.\d+)\.conv\.", r"\1.bridge."),
        (r"^(fswg\.\d+)\.conv([12])\.", r"\1.fuse\2."),
        (r"^(fswg\.\d+)\.rb1\.", r"\1.wirw."),
        (r"(\.wdib\d)\.srb(\d)\.", r"\1.wirw\2."),
        (r"(\.wdib\d)\.rb(\d)\.", r"\1.wcrw\2."),
        (r"(\.wdib\d)\.([AB])(\d)_coffconv\.", lambda m: f"{m[1]}.coef_{m[2].lower()}{m[3]}."),
        (r"(\.wdib\d)\.conv_distilled(\d)\.", r"\1.distill_gate\2."),
        (r"(\.wdib\d)\.fuse1\.", r"\1.fusion."),
        (r"(\.wdib\d)\.fuse2\.", r"\1.fusion_gate."),
        (r"\.conv\.(weight|bias)$", r".shortcut.\1"),
        (r"\.SAlayer\.", ".sa."),
        (r"\.(res_scale|x_scale|scale_x\d?|scale_res)\.scale$", r".\1"),
        (r"\.upper_branch\.1\.", ".mean_branch.0."),
        (r"\.upper_branch\.3\.", ".mean_branch.2."),
        (r"\.lower_branch\.", ".std_branch."),
        (r"\.weight_g$", ".parametrizations.weight.original0"),
        (r"\.weight_v$", ".parametrizations.weight.original1"),
    ]
]


def _authors_key_to_ours(key: str) -> str:
    for pattern, repl in _RULES:
        key = pattern.sub(repl, key)
    return key


def _normalise_style(key: str) -> str:
    """Undo the styles people re-save with: DataParallel's prefix, new weight norm."""
    key = key.removeprefix("module.")
    return key.replace(".parametrizations.weight.original0", ".weight_g").replace(
        ".parametrizations.weight.original1", ".weight_v"
    )


def is_authors_layout(state: Mapping[str, object]) -> bool:
    return any(_normalise_style(k).startswith(("Li1.", "Sub_mean.")) for k in state)


def from_authors(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Map an authors'-layout state dict (any re-save style) onto our keys."""
    return {_authors_key_to_ours(_normalise_style(k)): v for k, v in state.items()}


def detect(state: Mapping[str, torch.Tensor]) -> tuple[int, str]:
    """Read (scale, variant) from a state dict in our layout."""
    up = state.get("trunk_up.weight")
    if up is None or up.ndim != 4:
        raise CheckpointError("not an FDIWN checkpoint: no upsampler weight 'trunk_up.weight'")
    scale = round((up.shape[0] / 3) ** 0.5)
    groups = len({k.split(".")[1] for k in state if k.startswith("fswg.")})
    variant = next((v.name for v in VARIANTS.values() if v.groups == groups), None)
    if scale not in SCALES or 3 * scale * scale != up.shape[0] or variant is None:
        raise CheckpointError(
            f"not an FDIWN checkpoint: upsampler has {up.shape[0]} output channels and {groups} FSWG groups"
        )
    return scale, variant


def build(state: Mapping[str, torch.Tensor], scale: int | None = None, variant: str | None = None) -> FDIWN:
    """Build the network for a state dict in our layout, checking keys and shapes strictly."""
    found_scale, found_variant = detect(state)
    if scale is not None and scale != found_scale:
        raise CheckpointError(f"checkpoint is for scale x{found_scale}, but x{scale} was requested")
    if variant is not None and variant != found_variant:
        raise CheckpointError(f"checkpoint is for variant {found_variant!r}, but {variant!r} was requested")
    model = FDIWN(found_scale, found_variant)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not match FDIWN x{found_scale} {found_variant!r}: "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    for k, v in expected.items():
        if state[k].shape != v.shape:
            raise CheckpointError(
                f"checkpoint tensor {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
            )
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_authors_pt(path: str | os.PathLike[str]) -> StateDict:
    """Read an authors' ``.pt`` safely (tensors only, never arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} holds objects other than tensors; refusing to unpickle it ({e})") from e
    except Exception as e:  # truncated files and non-checkpoints fail in many ways inside torch
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {type(e).__name__}: {e}") from e
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    if not is_authors_layout(obj):
        raise CheckpointError(f"{path} is not an FDIWN checkpoint in the authors' layout")
    return from_authors(obj)


def read_safetensors(path: str | os.PathLike[str]) -> tuple[StateDict, dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    data = path.read_bytes()
    try:
        state = st_load(data)
        (header_len,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, struct.error) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file: {e}") from e
    if is_authors_layout(state):
        state = from_authors(state)
    return state, metadata


def read_checkpoint(path: str | os.PathLike[str]) -> StateDict:
    """Read either format into a state dict in our layout; the kind is sniffed from the bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        return read_safetensors(path)[0]
    return read_authors_pt(path)


def load_network(path: str | os.PathLike[str], scale: int | None = None, variant: str | None = None) -> FDIWN:
    return build(read_checkpoint(path), scale, variant)


def _canonical_safetensors(blob: bytes) -> bytes:
    """Rewrite the header with sorted keys: safetensors orders metadata at random."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + n :]


def save_safetensors(
    model: FDIWN,
    path: str | os.PathLike[str],
    *,
    source_sha256: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Save the training form byte-stably with metadata; returns the file's sha256."""
    if model.folded:
        raise ValueError("save the training form: this model was folded for inference")
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "variant": model.variant, "scale": str(model.scale)}
    if source_sha256:
        metadata["source_sha256"] = source_sha256
    metadata.update(extra or {})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = _canonical_safetensors(st_save(state, metadata=metadata))
    atomic_write_bytes(path, blob)
    return hashlib.sha256(blob).hexdigest()


def convert(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], scale: int | None = None, variant: str | None = None
) -> str:
    """Convert an authors' ``.pt`` into our safetensors; returns the new file's sha256.

    Everything is validated before anything is written, so a bad input leaves no file.
    """
    model = build(read_authors_pt(src), scale, variant)
    return save_safetensors(model, dst, source_sha256=sha256_file(src))

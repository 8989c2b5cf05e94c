"""``weights_manifest.json``: which pretrained files exist, where they live, what their bytes hash to.

The manifest is the trust anchor of every download: nothing fetched is used
unless its sha256 matches the entry. It ships inside the wheel; an editable
install reads the copy at the repository root.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import WeightsError
from .network import SCALES, VARIANTS

__all__ = [
    "METRICS",
    "SCHEMA",
    "HubFile",
    "Manifest",
    "ModelEntry",
    "Upstream",
    "load_manifest",
    "manifest_path",
    "parse_manifest",
    "read_manifest",
]

SCHEMA = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Set5 means with the paper's protocol: measured on these weights, and as printed in the paper.
METRICS = ("set5_psnr_y", "set5_ssim_y", "paper_set5_psnr_y", "paper_set5_ssim_y")


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str


@dataclass(frozen=True)
class Upstream:
    """The authors' original ``.pt``: the fallback source when the Hub cannot serve ours."""

    url: str
    sha256: str
    size: int
    format: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    variant: str
    scale: int
    hub: HubFile
    sha256: str
    size: int
    upstream: Upstream
    params: int
    metrics: dict[str, float]
    license: str


@dataclass(frozen=True)
class Manifest:
    models: dict[str, ModelEntry]

    def entry(self, scale: int, variant: str) -> ModelEntry:
        """The entry for (scale, variant), or a WeightsError saying none was ever released."""
        for e in self.models.values():
            if e.scale == scale and e.variant == variant:
                return e
        released = sorted({e.variant for e in self.models.values()})
        raise WeightsError(
            f"no pretrained weights exist for variant {variant!r} x{scale}: pretrained weights are released only for "
            f"{released} (the authors published no others and fdiwn-sr has trained none). Train one with the "
            f"fdiwn_sr.training module and pass weights=PATH to the resulting file."
        )


def _field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}.{key} must be a {kind.__name__}, got {value!r}")
    return value


def _sha(obj: dict[str, Any], where: str) -> str:
    value = _field(obj, "sha256", str, where)
    if not _SHA256.match(value):
        raise ValueError(f"{where}.sha256 must be 64 lowercase hex digits, got {value!r}")
    return value


def _size(obj: dict[str, Any], where: str) -> int:
    value = _field(obj, "size", int, where)
    if value <= 0:
        raise ValueError(f"{where}.size must be positive, got {value}")
    return value


def _entry(name: str, raw: object) -> ModelEntry:
    where = f"models.{name}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    variant = _field(raw, "variant", str, where)
    scale = _field(raw, "scale", int, where)
    if variant not in VARIANTS or scale not in SCALES:
        raise ValueError(f"{where}: unknown variant/scale {variant!r} x{scale}")
    hub = _field(raw, "hub", dict, where)
    up = _field(raw, "upstream", dict, where)
    if up.get("format") != "authors-pt" or not str(up.get("url", "")).startswith("https://"):
        raise ValueError(f"{where}.upstream needs an https url and format 'authors-pt', got {up!r}")
    metrics = _field(raw, "metrics", dict, where)
    missing = [k for k in METRICS if k not in metrics]
    if missing or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()):
        raise ValueError(f"{where}.metrics must map {list(METRICS)} (at least) to numbers, got {metrics!r}")
    return ModelEntry(
        name=name,
        variant=variant,
        scale=scale,
        hub=HubFile(*(_field(hub, k, str, f"{where}.hub") for k in ("repo_id", "filename", "revision"))),
        sha256=_sha(raw, where),
        size=_size(raw, where),
        upstream=Upstream(up["url"], _sha(up, f"{where}.upstream"), _size(up, f"{where}.upstream"), up["format"]),
        params=_field(raw, "params", int, where),
        metrics={k: float(v) for k, v in metrics.items()},
        license=_field(raw, "license", str, where),
    )


def parse_manifest(data: object) -> Manifest:
    """Validate a decoded manifest; a malformed one is a ValueError naming the bad field."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"weights manifest must be an object with schema {SCHEMA}")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ValueError("weights manifest has no 'models'")
    entries = {name: _entry(name, raw) for name, raw in models.items()}
    seen: set[tuple[str, int]] = set()
    for e in entries.values():
        if (e.variant, e.scale) in seen:
            raise ValueError(f"weights manifest lists {e.variant!r} x{e.scale} twice")
        seen.add((e.variant, e.scale))
    return Manifest(entries)


def manifest_path() -> Path:
    """The packaged manifest (wheel), else the repository root's (editable install)."""
    packaged = resources.files("fdiwn_sr").joinpath("weights_manifest.json")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "weights_manifest.json"


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"weights manifest {path} is not valid JSON: {e}") from e
    try:
        return parse_manifest(data)
    except ValueError as e:
        raise ValueError(f"weights manifest {path}: {e}") from e


@functools.lru_cache(maxsize=1)
def load_manifest() -> Manifest:
    return read_manifest(manifest_path())

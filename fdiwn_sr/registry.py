"""The model zoo as a list: every (variant, scale) the package builds, and which have pretrained weights.

Like timm's ``list_models`` / ``list_pretrained``: names and facts come from the
network's configuration table and ``weights_manifest.json`` (the same manifest
that verifies downloads), so the list cannot disagree with what loads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .manifest import METRICS, load_manifest
from .network import FDIWN, SCALES, VARIANTS, VariantName, count_parameters

__all__ = ["ModelInfo", "list_models", "list_pretrained"]


@dataclass(frozen=True)
class ModelInfo:
    """One loadable network: ``load_model(info.scale, info.variant)`` (with ``weights=`` if not pretrained)."""

    name: str  # "fdiwn-x4", "fdiwn-m-x2": the manifest's key for pretrained ones
    variant: VariantName
    scale: int
    params: int
    pretrained: bool  # whether load_model can fetch released weights for it
    # Set5 scores of the pretrained weights (manifest.METRICS): measured with the paper's protocol (PSNR-Y in dB),
    # and as printed in the paper (MATLAB evaluation). None where no weights are released.
    set5_psnr_y: float | None = None
    set5_ssim_y: float | None = None
    paper_set5_psnr_y: float | None = None
    paper_set5_ssim_y: float | None = None


def list_models(pretrained: bool = False) -> list[ModelInfo]:
    """Every variant at every scale (variants in table order, scales ascending); ``pretrained=True``: only
    those with released weights."""
    return [m for m in _all_models() if m.pretrained or not pretrained]


def list_pretrained() -> list[ModelInfo]:
    """The models whose weights ``load_model`` fetches (from the Hub, verified against the manifest)."""
    return list_models(pretrained=True)


@functools.cache
def _all_models() -> tuple[ModelInfo, ...]:
    released = {(e.variant, e.scale): e for e in load_manifest().models.values()}
    models = []
    for variant in VARIANTS:
        for scale in SCALES:
            entry = released.get((variant, scale))
            if entry is None:
                models.append(ModelInfo(f"{variant}-x{scale}", variant, scale, _params(scale, variant), False))
                continue
            scores = {k: entry.metrics[k] for k in METRICS}
            models.append(ModelInfo(entry.name, variant, scale, entry.params, True, **scores))
    return tuple(models)


def _params(scale: int, variant: str) -> int:
    """Counted on the meta device: shapes only, no memory, no random initialisation."""
    with torch.device("meta"):
        return count_parameters(FDIWN(scale, variant))

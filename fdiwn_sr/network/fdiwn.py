"""FDIWN and its small variant FDIWN-M, from one table of configurations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import FSWG, conv, fold_weight_norm

__all__ = [
    "EXPANSION",
    "FDIWN",
    "RGB_MEAN",
    "SCALES",
    "TRUNK_WIDTH",
    "VARIANTS",
    "Variant",
    "VariantName",
    "check_config",
    "count_parameters",
]

TRUNK_WIDTH = 24
RGB_MEAN = (0.4488, 0.4371, 0.4040)
SCALES = (2, 3, 4)
VariantName = Literal["fdiwn", "fdiwn-m"]  # the keys of VARIANTS, for type checkers


@dataclass(frozen=True)
class Variant:
    """How many FSWG weight sets a variant has, and the order they are applied in."""

    name: str
    groups: int
    order: tuple[int, ...]
    description: str


VARIANTS: dict[str, Variant] = {
    "fdiwn": Variant("fdiwn", 3, (0, 0, 1, 2, 1, 2), "three FSWG weight sets applied six times (as released)"),
    "fdiwn-m": Variant("fdiwn-m", 2, (0, 0, 1, 1), "two FSWG weight sets applied four times (our wiring)"),
}

# Widening factors of the wide units (WIRW, WCRW, fusion) per scale.
EXPANSION = {2: (2.0, 4.0, 2.0), 3: (2.0, 4.0, 2.0), 4: (2.5, 4.5, 2.25)}


def check_config(scale: int, variant: str) -> Variant:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    return VARIANTS[variant]


class FDIWN(nn.Module):
    """Feature Distillation Interaction Weighting Network (Gao et al., AAAI 2022).

    Takes RGB in the 0..255 range, shape (B, 3, H, W); returns (B, 3, sH, sW)
    in the same range, unclamped.
    """

    def __init__(self, scale: int = 4, variant: VariantName = "fdiwn") -> None:
        super().__init__()
        spec = check_config(scale, variant)
        self.scale, self.variant, self.order = scale, variant, spec.order
        c, f = TRUNK_WIDTH, 32 if scale == 4 else 64
        self.sub_mean = conv(3, 3, 1)
        self.add_mean = conv(3, 3, 1)
        with torch.no_grad():
            for m, sign in ((self.sub_mean, -1.0), (self.add_mean, 1.0)):
                m.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
                m.bias.copy_(sign * 255.0 * torch.tensor(RGB_MEAN))
        self.head = conv(3, c, 3)
        self.fswg = nn.ModuleList(FSWG(c, *EXPANSION[scale]) for _ in range(spec.groups))
        self.trunk_tail = conv(c, f, 3, bias=False)
        self.trunk_up = conv(f, 3 * scale * scale, 3)
        self.skip_conv = conv(3, f, 3)
        self.skip_up = conv(f, 3 * scale * scale, 3)
        self.folded = False

    def forward(self, x: Tensor) -> Tensor:
        s = self.sub_mean(x)
        first, *rest = self.order
        d = self.fswg[first](self.head(s))
        for g in rest:
            d = d + self.fswg[g](d)
        y1 = F.pixel_shuffle(self.trunk_up(self.trunk_tail(d)), self.scale)
        # The authors' x4 model feeds its skip path the mean-subtracted input.
        y2 = F.pixel_shuffle(self.skip_up(self.skip_conv(s if self.scale == 4 else x)), self.scale)
        return self.add_mean(y1 + y2)

    @torch.no_grad()
    def fold(self) -> FDIWN:
        """Convert in place to the inference form (no weight norm, scalars folded)."""
        if not self.folded:
            fold_weight_norm(self)
            for group in self.fswg:
                group.fold_scales()
            self.folded = True
            self.requires_grad_(False)
        return self.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

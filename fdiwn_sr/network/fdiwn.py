"""FDIWN and its small variant FDIWN-M, from one table of configurations."""

from __future__ import annotations

import copy
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
"""The upscaling factors FDIWN is built for."""
VariantName = Literal["fdiwn", "fdiwn-m"]
"""The variant names, for type checkers (the keys of ``VARIANTS``)."""


@dataclass(frozen=True)
class Variant:
    """How many FSWG weight sets a variant has, and the order they are applied in.

    Args:
        name: The variant's name, as ``load_model(variant=...)`` takes it.
        groups: Number of FSWG weight sets.
        order: Which weight set each of the applied FSWGs uses, in order.
        description: One line for listings.
    """

    name: str
    groups: int
    order: tuple[int, ...]
    description: str


VARIANTS: dict[str, Variant] = {
    "fdiwn": Variant("fdiwn", 3, (0, 0, 1, 2, 1, 2), "three FSWG weight sets applied six times (as released)"),
    "fdiwn-m": Variant("fdiwn-m", 2, (0, 0, 1, 1), "two FSWG weight sets applied four times (our wiring)"),
}
"""The variants by name: ``fdiwn`` (as released) and ``fdiwn-m`` (the paper's small model, our wiring)."""

# Widening factors of the wide units (WIRW, WCRW, fusion) per scale.
EXPANSION = {2: (2.0, 4.0, 2.0), 3: (2.0, 4.0, 2.0), 4: (2.5, 4.5, 2.25)}


def check_config(scale: int, variant: str) -> Variant:
    """Check a (scale, variant) request before any work is done.

    Args:
        scale: Upscaling factor, one of [`SCALES`][fdiwn_sr.network.SCALES].
        variant: A name in [`VARIANTS`][fdiwn_sr.network.VARIANTS].

    Returns:
        The variant's configuration.

    Raises:
        ValueError: If the scale or the variant is not one of those listed.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    return VARIANTS[variant]


class FDIWN(nn.Module):
    """Feature Distillation Interaction Weighting Network (Gao et al., AAAI 2022).

    Takes RGB in the 0..255 range, shape (B, 3, H, W); returns (B, 3, sH, sW)
    in the same range, unclamped. A new instance is the training form with random
    weights; [`load_model`][fdiwn_sr.load_model] gives a pretrained, folded one.

    Args:
        scale: Upscaling factor, one of [`SCALES`][fdiwn_sr.network.SCALES].
        variant: ``"fdiwn"`` or ``"fdiwn-m"`` (see [`VARIANTS`][fdiwn_sr.network.VARIANTS]).

    Raises:
        ValueError: If the scale or the variant is not one of those listed.
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
        """Upscale a batch.

        Args:
            x: RGB on the 0..255 scale, shape (B, 3, H, W).

        Returns:
            RGB on the 0..255 scale, shape (B, 3, scale * H, scale * W), unclamped.
        """
        s = self.sub_mean(x)
        first, *rest = self.order
        d = self.fswg[first](self.head(s))
        for g in rest:
            d = d + self.fswg[g](d)
        y1 = F.pixel_shuffle(self.trunk_up(self.trunk_tail(d)), self.scale)
        # The authors' x4 model feeds its skip path the mean-subtracted input.
        y2 = F.pixel_shuffle(self.skip_up(self.skip_conv(s if self.scale == 4 else x)), self.scale)
        return self.add_mean(y1 + y2)

    def folded_copy(self) -> FDIWN:
        """The inference form as a new module; this one stays as it is (the backends never change a caller's model).

        Returns:
            A folded copy, on this module's device and dtype.
        """
        if self.folded:
            return copy.deepcopy(self)
        # A fresh module, not a deepcopy: that would share weight norm's parametrised classes.
        like = next(self.parameters())
        twin = FDIWN(self.scale, self.variant).to(device=like.device, dtype=like.dtype)
        twin.load_state_dict(self.state_dict())
        return twin.fold()

    @torch.no_grad()
    def fold(self) -> FDIWN:
        """Convert in place to the inference form: weight norm baked in, scalars folded.

        The function computed stays the same within float rounding; the parameters stop
        requiring gradients and the module is put in eval mode. Folding twice does nothing.

        Returns:
            This module.
        """
        if not self.folded:
            fold_weight_norm(self)
            for group in self.fswg:
                group.fold_scales()
            self.folded = True
            self.requires_grad_(False)
        return self.eval()


def count_parameters(model: nn.Module) -> int:
    """Count a module's parameters (the paper's "params" column).

    Args:
        model: Any module.

    Returns:
        The number of parameter elements.
    """
    return sum(p.numel() for p in model.parameters())

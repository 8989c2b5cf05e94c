"""The paper's building blocks, in the form the authors trained them.

Attribute names follow the paper (WIRW, WCRW, WDIB, FSWG, shuffle attention);
:mod:`fdiwn_sr.checkpoints` maps the authors' checkpoint keys onto them.

Every learned scalar multiplier is a ``Parameter`` while training. ``fold()``
turns the module into its inference form: weight normalisation is baked into
plain convolution weights and every scalar that multiplies a linear path is
pushed into that path's convolution, so a forward pass recomputes nothing.
Scalars that cannot be pushed into a convolution stay as Python floats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "FSWG",
    "WCRW",
    "WDIB",
    "WIRW",
    "CoefficientUnit",
    "ShuffleAttention",
    "WideUnit",
    "channel_shuffle",
    "conv",
    "fold_weight_norm",
]

Scalar = nn.Parameter | float
LOW_PRECISION = (torch.float16, torch.bfloat16)


def float32_statistics(x: Tensor) -> Tensor:
    """``x`` in float32 when it is float16/bfloat16: the input of a global statistic.

    Squared deviations over a whole image overflow float16 and lose every
    digit in bfloat16; the convolutions around the statistics stay low-precision.
    """
    return x.float() if x.dtype in LOW_PRECISION else x


def like_input(y: Tensor, x: Tensor) -> Tensor:
    """A float32 result back in the input's precision, unless autocast picks each operation's precision."""
    if y.dtype == x.dtype or torch.is_autocast_enabled(x.device.type):
        return y
    return y.to(x.dtype)


def act(x: Tensor) -> Tensor:
    """The network's activation: LeakyReLU with the authors' 0.05 slope."""
    return F.leaky_relu(x, 0.05)


def scalar(value: float = 1.0) -> nn.Parameter:
    """A learned scalar multiplier (the authors' ``Scale`` module)."""
    return nn.Parameter(torch.tensor([float(value)]))


def mul(x: Tensor, s: Scalar) -> Tensor:
    """Multiply by a scalar, skipping the pass over memory when it folded to 1."""
    if isinstance(s, float) and s == 1.0:
        return x
    return x * s


def conv(cin: int, cout: int, k: int, *, bias: bool = True, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias, groups=groups)


def wn_conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return weight_norm(conv(cin, cout, k), dim=0)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def fold_weight_norm(module: nn.Module) -> None:
    """Replace every weight-norm parametrisation below ``module`` by its value."""
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


@torch.no_grad()
def scale_conv_(c: nn.Conv2d, s: float, *, in_channels: slice | None = None) -> None:
    """Fold a scalar into a convolution: on its output, or on some input channels."""
    if in_channels is None:
        c.weight.mul_(s)
        if c.bias is not None:
            c.bias.mul_(s)
    else:
        c.weight[:, in_channels].mul_(s)


def take(module: nn.Module, name: str) -> float:
    """Turn a scalar parameter into a plain float (for folding)."""
    value = float(getattr(module, name))
    delattr(module, name)
    return value


class ShuffleAttention(nn.Module):
    """SA-Net shuffle attention with six groups: channel and spatial gates."""

    groups = 6

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels // (2 * self.groups)
        self.cweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, c, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, c, 1, 1))
        self.gn = nn.GroupNorm(c, c)

    def forward(self, x: Tensor) -> Tensor:
        """In float32 for float16/bfloat16 inputs (both gates are statistics over the image)."""
        b, c, h, w = x.shape
        z = float32_statistics(x).reshape(b * self.groups, c // self.groups, h, w)
        z0, z1 = z.chunk(2, dim=1)
        z0 = z0 * torch.sigmoid(self.cweight * z0.mean((2, 3), keepdim=True) + self.cbias)
        # The group norm's affine parameters follow the (float32) statistics: a model halved as a whole
        # (spandrel's .half()) has half parameters, which GroupNorm refuses beside a float32 input.
        gn = F.group_norm(z1, self.gn.num_groups, self.gn.weight.to(z1.dtype), self.gn.bias.to(z1.dtype), self.gn.eps)
        z1 = z1 * torch.sigmoid(self.sweight * gn + self.sbias)
        out = torch.cat([z0, z1], dim=1).reshape(b, c, h, w)
        return like_input(channel_shuffle(out, 2), x)


class WideUnit(nn.Module):
    """A wide-activation residual unit: y = res_scale*SA(body(x)) + x_scale*shortcut(x).

    ``shortcut=False`` is the paper's WIRW (identity shortcut, cin == cout);
    with a 3x3 shortcut convolution it is the WCRW, or the fusion unit of a WDIB.
    """

    def __init__(self, cin: int, cout: int, wide: int, narrow: int, *, shortcut: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            wn_conv(cin, wide, 1), nn.ReLU(inplace=True), wn_conv(wide, narrow, 1), wn_conv(narrow, cout, 3)
        )
        self.sa = ShuffleAttention(cout)
        self.shortcut = conv(cin, cout, 3) if shortcut else None
        self.res_scale: Scalar = scalar()
        self.x_scale: Scalar = scalar()

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return mul(self.sa(self.body(x)), self.res_scale) + mul(skip, self.x_scale)

    def fold_scales(self, outer: float = 1.0) -> None:
        """Fold x_scale into the shortcut conv; keep res_scale (SA is nonlinear)."""
        self.res_scale = take(self, "res_scale") * outer
        x_scale = take(self, "x_scale") * outer
        if self.shortcut is None:
            self.x_scale = x_scale
        else:
            scale_conv_(self.shortcut, x_scale)
            self.x_scale = 1.0


def WIRW(c: int, expand: float) -> WideUnit:
    """Wide identical residual weighting unit: c -> c."""
    return WideUnit(c, c, int(c * expand), c // 2, shortcut=False)


def WCRW(c: int, expand: float) -> WideUnit:
    """Wide convolutional residual weighting unit: c -> 2c."""
    return WideUnit(c, 2 * c, int(c * expand), c, shortcut=True)


class CoefficientUnit(nn.Module):
    """Per-channel weights from global mean and std (paper Fig. 4)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        r = c // 8
        self.mean_branch = nn.Sequential(conv(c, r, 1), nn.ReLU(inplace=True), conv(r, c, 1), nn.ReLU(inplace=True))
        self.std_branch = nn.Sequential(conv(c, r, 1), nn.ReLU(inplace=True), conv(r, c, 1), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        """Mean and std in float32 for float16/bfloat16 inputs; the branches in the input's precision."""
        var, mean = torch.var_mean(float32_statistics(x), dim=(2, 3), keepdim=True, correction=0)
        mean, std = like_input(mean, x), like_input(var.sqrt(), x)
        return (torch.sigmoid(self.mean_branch(mean)) + torch.sigmoid(self.std_branch(std))) * 0.5


class WDIB(nn.Module):
    """Wide-residual distillation interaction block: a WRDC, then an SCF, then shuffle attention.

    ``wirw1..4``, ``wcrw1/2``, ``coef_*`` and ``distill_gate1/2`` make up the
    WRDC (:meth:`wrdc`); ``fusion``, ``fusion_gate`` and the scalars
    ``scale_x1/2`` the SCF (:meth:`scf`). Attribute names are checkpoint keys.
    """

    def __init__(self, c: int, e1: float, e2: float, e3: float) -> None:
        super().__init__()
        h = c // 2
        self.wirw1, self.wirw2, self.wirw3, self.wirw4 = (WIRW(c, e1) for _ in range(4))
        self.wcrw1, self.wcrw2 = WCRW(h, e2), WCRW(h, e2)
        self.coef_a1, self.coef_b1, self.coef_a2, self.coef_b2 = (CoefficientUnit(c) for _ in range(4))
        self.distill_gate1 = conv(h, c, 3, bias=False)
        self.distill_gate2 = conv(h, c, 3, bias=False)
        self.scale_x1: Scalar = scalar()
        self.scale_x2: Scalar = scalar()
        self.fusion = WideUnit(2 * c, c, int(2 * c * e3), c, shortcut=True)
        self.fusion_gate = conv(2 * c, c, 1, bias=False)
        self.sa = ShuffleAttention(c)

    def forward(self, x: Tensor) -> Tensor:
        return self.sa(self.scf(*self.wrdc(x), x))

    def wrdc(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The wide-residual distillation connection (WRDC): two distillation steps with interaction.

        Each step distils half of a WIRW's output (``d``) and refines the other
        half with a WCRW; the two branches weight each other through the
        coefficient units, and the distilled halves gate them (``distill_gate``).
        Returns the two branches, each through its last WIRW.
        """
        h = x.shape[1] // 2
        a = act(self.wirw1(x))
        d_a, r_a = a[:, :h], a[:, h:]
        p = self.wcrw1(r_a)
        ub1 = torch.addcmul(x, self.coef_a1(p), p)
        ua1 = torch.addcmul(p, self.coef_b1(x), x)
        b = act(self.wirw2(ub1))
        d_b, r_b = b[:, :h], b[:, h:]
        q = self.wcrw2(r_b)
        ub2 = torch.addcmul(q, self.coef_a2(ua1), ua1) * torch.sigmoid(self.distill_gate1(d_b))
        ua2 = torch.addcmul(ua1, self.coef_b2(q), q) * torch.sigmoid(self.distill_gate2(d_a))
        return self.wirw3(ua2), self.wirw4(ub2)

    def scf(self, oa: Tensor, ob: Tensor, x: Tensor) -> Tensor:
        """The self-calibration fusion (SCF) of the two branches, plus the block's input.

        The fusion unit (a wide unit with a convolutional shortcut) merges the
        concatenated branches, and a sigmoid gate computed from them calibrates
        how much of the second branch passes through.
        """
        cat = torch.cat([mul(oa, self.scale_x1), mul(ob, self.scale_x2)], dim=1)
        return self.fusion(cat) + torch.sigmoid(self.fusion_gate(cat)) * ob + x

    def fold_scales(self) -> None:
        """scale_x1 goes into wirw3's scalars; scale_x2 into the fusion inputs."""
        c = self.fusion_gate.weight.shape[0]
        for unit in (self.wirw1, self.wirw2, self.wirw4, self.wcrw1, self.wcrw2):
            unit.fold_scales()
        self.wirw3.fold_scales(take(self, "scale_x1"))
        self.scale_x1 = 1.0
        s2 = take(self, "scale_x2")
        self.scale_x2 = 1.0
        scale_conv_(self.fusion_gate, s2, in_channels=slice(c, None))
        scale_conv_(self.fusion.shortcut, s2, in_channels=slice(c, None))
        scale_conv_(self.fusion.body[0], s2, in_channels=slice(c, None))
        self.fusion.fold_scales()


class FSWG(nn.Module):
    """Feature shuffle weighted group: three WDIBs with shuffled cross-fusion."""

    def __init__(self, c: int, e1: float, e2: float, e3: float) -> None:
        super().__init__()
        self.wdib1, self.wdib2, self.wdib3 = (WDIB(c, e1, e2, e3) for _ in range(3))
        self.bridge = conv(c, c, 3, bias=False)
        self.fuse1 = conv(2 * c, c, 3, bias=False, groups=4)
        self.fuse2 = conv(2 * c, c, 3, bias=False, groups=4)
        self.wirw = WIRW(c, e1)
        self.scale_x: Scalar = scalar(0.5)
        self.scale_res: Scalar = scalar(0.5)

    def forward(self, x: Tensor) -> Tensor:
        o1 = self.wdib1(x)
        o11 = self.wdib2(o1)
        o3 = self.wdib3(o11 + self.bridge(o1))
        c1 = self.fuse1(channel_shuffle(torch.cat([o1, o11], dim=1), 4))
        c2 = self.fuse2(channel_shuffle(torch.cat([c1, o3], dim=1), 4))
        return mul(c2 + o3, self.scale_x) + mul(self.wirw(x), self.scale_res)

    def fold_scales(self) -> None:
        for block in (self.wdib1, self.wdib2, self.wdib3):
            block.fold_scales()
        self.wirw.fold_scales(take(self, "scale_res"))
        self.scale_res = 1.0
        self.scale_x = take(self, "scale_x")

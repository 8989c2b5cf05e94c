"""The fused inference form: the folded network's algebra rewritten into fewer passes over memory.

Built from an :class:`~fdiwn_sr.network.FDIWN` (folded on a copy, never in
place); computes the same function (to float rounding) with these rewrites,
each exact in real arithmetic:

- Shuffle attention is a per-channel gate ``z * sigmoid(a*z + b)`` whose ``a, b``
  come from the channel's mean and variance (its GroupNorm has one channel per
  group); the channel shuffle after it is folded into the preceding convolution's
  output channels wherever that convolution is the only producer.
- A wide unit's ``res_scale`` is folded into its last convolution (the gate's
  epsilon and coefficients are rescaled to match); ``scale_x`` into ``fuse2``; the
  FSWG's outer residual into its WIRW's identity coefficient; ``add_mean`` into
  the upsampling convolutions, whose two pixel shuffles become one.
- The coefficient units' two tiny MLPs run as one block-diagonal MLP; the
  wide units' 1x1 convolutions are widened with zero channels to multiples of 8;
  the SCF's fusion unit never makes its concatenated input, its shortcut runs
  on each half.

This module is the graph only. How its compound operations run (plain PyTorch,
or oneDNN's fused CPU kernels) is :mod:`fdiwn_sr.network.kernels`' job, chosen
once when the module is built (``FusedFDIWN(model, kernels)``); built with the
plain kernels it is what an ONNX export records.
"""

from __future__ import annotations

from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import FSWG, WDIB, CoefficientUnit, ShuffleAttention, WideUnit
from .fdiwn import FDIWN
from .kernels import PLAIN, SLOPE, Plain, shuffle_source

__all__ = ["Conv", "Fused", "FusedFDIWN", "FusedFSWG", "FusedWDIB", "Gate", "Wide"]


class Fused(nn.Module):
    """A module of the fused form: its operations run on the kernel set it was given (plain until then)."""

    kernels: Plain = PLAIN

    def using(self, kernels: Plain) -> Self:
        """Run this module and every fused module inside it on ``kernels`` (chosen once, at build time)."""
        for m in self.modules():
            if isinstance(m, Fused):
                m.kernels = kernels
        return self


class Conv(Fused):
    """A convolution with its activation ("none", "relu", "sigmoid", "leaky") fused when oneDNN runs it."""

    def __init__(self, weight: Tensor, bias: Tensor | None, *, groups: int = 1, act: str = "none") -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone().contiguous())
        self.padding = [weight.shape[-1] // 2] * 2
        self.groups, self.act = groups, act
        self.pointwise = weight.shape[-1] == 1 and groups == 1

    @classmethod
    def of(
        cls,
        conv: nn.Conv2d,
        *,
        act: str = "none",
        out_order: Tensor | None = None,
        scale: float = 1.0,
        out_channels: int = 0,
        in_channels: int = 0,
    ) -> Conv:
        """From a plain ``nn.Conv2d``: output channels reordered, scaled, or zero-padded to a width.

        Zero padding computes the same function, wider: oneDNN works in blocks
        of 8 channels, and a width of 60 or 108 runs far slower than 64 or 112.
        """
        w, b = conv.weight, conv.bias
        if out_order is not None:
            w, b = w[out_order], None if b is None else b[out_order]
        if scale != 1.0:
            w, b = w * scale, None if b is None else b * scale
        extra_out, extra_in = max(out_channels - w.shape[0], 0), max(in_channels - w.shape[1], 0)
        w = F.pad(w, (0, 0, 0, 0, 0, extra_in, 0, extra_out))
        b = None if b is None else F.pad(b, (0, extra_out))
        return cls(w, b, groups=conv.groups, act=act)

    def split_inputs(self, *sizes: int) -> list[Conv]:
        """Convolutions on consecutive groups of input channels whose outputs sum to this one's (bias in the first).

        Only a linear, ungrouped convolution splits so; anything else would change the function.
        """
        if self.act != "none" or self.groups != 1:
            raise ValueError(f"cannot split the inputs of a convolution with act={self.act!r}, groups={self.groups}")
        parts = self.weight.split(list(sizes), 1)
        return [Conv(w, self.bias if i == 0 else None) for i, w in enumerate(parts)]

    def forward(self, x: Tensor) -> Tensor:
        return self.kernels.conv(self, x)

    def plus(self, x: Tensor, other: Tensor) -> Tensor:
        """``conv(x) + other`` (activation must be "none")."""
        return self.kernels.conv_plus(self, x, other)

    def accumulate_(self, out: Tensor, x: Tensor) -> Tensor:
        """``out += conv(x)`` in place (activation must be "none")."""
        return self.kernels.conv_accumulate_(self, out, x)


def round8(n: int) -> int:
    return -(-n // 8) * 8


class Gate(Fused):
    """Shuffle attention as a per-channel gate on a pre-scaled input ``z' = s*z``.

    Channel-attention channels: ``sigmoid(cw*mean + cb)``; GroupNorm channels:
    ``sigmoid(sw*(gamma*(z-mean)/sqrt(var+eps) + beta) + sb)``. With ``z' = s*z`` the
    same gate is ``sigmoid(a*z' + b)``, ``a = ga/sqrt(var'+s^2 eps)`` and
    ``b = c0 + (c1 - a)*mean'`` (``ga = sign(s)*sw*gamma``, ``c1 = cw/s``).
    """

    def __init__(self, sa: ShuffleAttention, channels: int, order: Tensor, scale: float = 1.0) -> None:
        super().__init__()
        # Input channel k sits in group k // per_group; the first half of each group is channel attention.
        half = channels // sa.groups // 2
        r = order.to(sa.cweight.device) % (2 * half)
        channel_attention = r < half
        i = torch.where(channel_attention, r, r - half)
        cw, cb, sw, sb = (p.detach().flatten()[i] for p in (sa.cweight, sa.cbias, sa.sweight, sa.sbias))
        gamma, beta = sa.gn.weight.detach()[i], sa.gn.bias.detach()[i]
        zero = torch.zeros_like(cw)
        sign = -1.0 if scale < 0 else 1.0
        ga = torch.where(channel_attention, zero, sign * sw * gamma)
        c0 = torch.where(channel_attention, cb, sw * beta + sb)
        c1 = torch.where(channel_attention, cw / scale, zero) if scale else zero
        for name, value in (("ga", ga), ("c0", c0), ("c1", c1)):
            self.register_buffer(name, value.view(1, -1, 1, 1).clone())
        self.eps = sa.gn.eps * scale * scale if scale else sa.gn.eps

    def coefficients(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``a, b`` of the gate on ``z``, shapes (B, C, 1, 1)."""
        mean, var = self.kernels.channel_stats(z)
        a = self.ga * torch.rsqrt(var + self.eps)
        return a, self.c0 + (self.c1 - a) * mean

    def forward(self, z: Tensor, residual: Tensor | None = None, alpha: float = 1.0) -> Tensor:
        """``z * sigmoid(a*z + b)``, plus ``alpha * residual`` when given."""
        a, b = self.coefficients(z)
        t = self.kernels.gate_sigmoid(z, a, b)
        y = t.mul_(z)
        return y if residual is None else y.add_(residual, alpha=alpha)

    def shuffled(self, z: Tensor, groups: int = 2) -> Tensor:
        """``channel_shuffle(self(z), groups)``."""
        return self.kernels.channel_shuffle(self(z), groups)


class Wide(Fused):
    """A wide unit (WIRW, WCRW, fusion): ``x_scale*skip + res_scale*SA(body(x))``, fused."""

    def __init__(self, unit: WideUnit) -> None:
        super().__init__()
        body0, body2, body3 = unit.body[0], unit.body[2], unit.body[3]
        rs, xs = float(unit.res_scale), float(unit.x_scale)
        order = shuffle_source(body3.out_channels, 2)
        wide = round8(body0.out_channels)
        self.expand = Conv.of(body0, act="relu", out_channels=wide)
        self.reduce = Conv.of(body2, in_channels=wide)
        self.spread = Conv.of(body3, out_order=order, scale=rs if rs else 1.0)
        self.gate = Gate(unit.sa, body3.out_channels, order, scale=rs)
        self.zero_body = rs == 0.0
        self.shortcut = None if unit.shortcut is None else Conv.of(unit.shortcut, scale=xs)
        self.identity = xs

    def body(self, x: Tensor, residual: Tensor | None = None, alpha: float = 1.0) -> Tensor:
        """``res_scale * SA(body(x))``, the unit without its skip path, plus ``alpha * residual``."""
        return self.gated(self.kernels.pointwise_chain(self.expand, self.reduce, x)[0], residual, alpha)

    def gated(self, narrow: Tensor, residual: Tensor | None = None, alpha: float = 1.0) -> Tensor:
        """The body from the output of its 1x1 chain on (plus ``alpha * residual``)."""
        z = self.spread(narrow)
        if not self.zero_body:
            return self.gate(z, residual, alpha)
        return z.zero_() if residual is None else z.zero_().add_(residual, alpha=alpha)

    def forward(self, x: Tensor, extra_identity: float = 0.0) -> Tensor:
        """The unit's output, plus ``extra_identity * x`` (an enclosing residual, folded)."""
        if self.shortcut is None:
            return self.body(x, x, self.identity + extra_identity)
        y = self.body(x, x if extra_identity else None, extra_identity)
        return self.shortcut.accumulate_(y, x)


class Coefficient(Fused):
    """The coefficient unit's mean and std branches as one block-diagonal two-layer MLP."""

    def __init__(self, unit: CoefficientUnit) -> None:
        super().__init__()
        (m0, _, m2, _), (s0, _, s2, _) = unit.mean_branch, unit.std_branch
        self.register_buffer("w1", torch.block_diag(m0.weight.flatten(1), s0.weight.flatten(1)))
        self.register_buffer("b1", torch.cat([m0.bias, s0.bias]))
        self.register_buffer("w2", torch.block_diag(m2.weight.flatten(1), s2.weight.flatten(1)))
        self.register_buffer("b2", torch.cat([m2.bias, s2.bias]))

    def forward(self, x: Tensor) -> Tensor:
        """Per-channel weights, shape (B, C, 1, 1)."""
        mean, var = self.kernels.channel_stats(x)
        v = torch.cat([mean, var.sqrt()], 1).flatten(1)
        w = torch.sigmoid(F.relu(F.linear(F.relu(F.linear(v, self.w1, self.b1)), self.w2, self.b2)))
        c = x.shape[1]
        return ((w[:, :c] + w[:, c:]) * 0.5).view(-1, c, 1, 1)


class FusedWDIB(Fused):
    """A WDIB in fused form; the same attribute names as :class:`~fdiwn_sr.network.blocks.WDIB`."""

    def __init__(self, block: WDIB) -> None:
        super().__init__()
        self.h = block.distill_gate1.in_channels
        self.wirw1, self.wirw2, self.wirw3, self.wirw4 = (
            Wide(u) for u in (block.wirw1, block.wirw2, block.wirw3, block.wirw4)
        )
        self.wcrw1, self.wcrw2, self.fusion = Wide(block.wcrw1), Wide(block.wcrw2), Wide(block.fusion)
        self.coef_a1, self.coef_b1, self.coef_a2, self.coef_b2 = (
            Coefficient(u) for u in (block.coef_a1, block.coef_b1, block.coef_a2, block.coef_b2)
        )
        self.distill_gate1 = Conv.of(block.distill_gate1, act="sigmoid")
        self.distill_gate2 = Conv.of(block.distill_gate2, act="sigmoid")
        self.fusion_gate = Conv.of(block.fusion_gate, act="sigmoid")
        c = block.fusion_gate.out_channels
        # The fusion unit's input is cat([wirw3, wirw4]); its shortcut runs on each half instead.
        self.fusion_shortcut = nn.ModuleList(self.fusion.shortcut.split_inputs(c, c))
        self.fusion.shortcut = None
        self.sa = Gate(block.sa, c, torch.arange(c))

    def forward(self, x: Tensor) -> Tensor:
        return self.sa.shuffled(self.scf(*self.wrdc(x), x))

    def wrdc(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The wide-residual distillation connection (see :meth:`WDIB.wrdc <fdiwn_sr.network.blocks.WDIB.wrdc>`)."""
        h = self.h
        a = F.leaky_relu_(self.wirw1(x), SLOPE)
        p = self.wcrw1(a[:, h:])
        ub1 = torch.addcmul(x, self.coef_a1(p), p)
        ua1 = torch.addcmul(p, self.coef_b1(x), x)
        b = F.leaky_relu_(self.wirw2(ub1), SLOPE)
        q = self.wcrw2(b[:, h:])
        ub2 = torch.addcmul(q, self.coef_a2(ua1), ua1).mul_(self.distill_gate1(b[:, :h]))
        ua2 = torch.addcmul(ua1, self.coef_b2(q), q).mul_(self.distill_gate2(a[:, :h]))
        return self.wirw3(ua2), self.wirw4(ub2)

    def scf(self, oa: Tensor, ob: Tensor, x: Tensor) -> Tensor:
        """The self-calibration fusion plus the block's residual, before its shuffle attention."""
        chain = self.kernels.pointwise_chain
        narrow, gate = chain(self.fusion.expand, self.fusion.reduce, oa, ob, side=self.fusion_gate)
        y = self.fusion.gated(narrow, x).addcmul_(gate, ob)
        for conv, half in zip(self.fusion_shortcut, (oa, ob), strict=True):
            y = conv.accumulate_(y, half)
        return y


class FusedFSWG(Fused):
    """An FSWG in fused form; its scalars folded into ``fuse2`` and the WIRW side path."""

    def __init__(self, group: FSWG) -> None:
        super().__init__()
        self.wdib1, self.wdib2, self.wdib3 = FusedWDIB(group.wdib1), FusedWDIB(group.wdib2), FusedWDIB(group.wdib3)
        self.bridge = Conv.of(group.bridge)
        self.fuse1 = Conv.of(group.fuse1)
        self.scale_x = float(group.scale_x)
        self.fuse2 = Conv.of(group.fuse2, scale=self.scale_x)
        self.wirw = Wide(group.wirw)

    def forward(self, x: Tensor, residual: bool) -> Tensor:
        """The group's output, plus ``x`` when ``residual``."""
        o1 = self.wdib1(x)
        o11 = self.wdib2(o1)
        o3 = self.wdib3(self.bridge.plus(o1, o11))
        c1 = self.fuse1(self.kernels.shuffled_concat(o1, o11, 4, scratch=True))
        out = self.wirw(x, extra_identity=1.0 if residual else 0.0).add_(o3, alpha=self.scale_x)
        return self.fuse2.accumulate_(out, self.kernels.shuffled_concat(c1, o3, 4, scratch=True))


def _fold_output_conv(up: nn.Conv2d, mix: Tensor, scale: int) -> tuple[Tensor, Tensor | None]:
    """Weights of ``up`` followed by a 1x1 colour mix applied after its pixel shuffle."""
    k = torch.kron(mix, torch.eye(scale * scale, dtype=mix.dtype, device=mix.device))
    w = torch.einsum("oc,cikl->oikl", k, up.weight)
    return w, None if up.bias is None else k @ up.bias


class FusedFDIWN(Fused):
    """The fused inference form of an FDIWN: same inputs and outputs, fewer passes.

    Copies the weights and leaves ``model`` as it is (an unfolded one is folded
    on a copy); runs on ``kernels`` (:func:`~fdiwn_sr.network.kernels.kernels_for`).
    """

    def __init__(self, model: FDIWN, kernels: Plain = PLAIN) -> None:
        super().__init__()
        if not model.folded:
            model = model.folded_copy()
        self.scale, self.variant, self.order = model.scale, model.variant, model.order
        self.sub_mean = Conv.of(model.sub_mean)
        self.head = Conv.of(model.head)
        self.fswg = nn.ModuleList(FusedFSWG(g) for g in model.fswg)
        self.trunk_tail = Conv.of(model.trunk_tail)
        self.skip_conv = Conv.of(model.skip_conv)
        mix, shift = model.add_mean.weight.flatten(1), model.add_mean.bias
        w, b = _fold_output_conv(model.trunk_up, mix, self.scale)
        self.trunk_up = Conv(w, b)
        w, b = _fold_output_conv(model.skip_up, mix, self.scale)
        self.skip_up = Conv(w, b + shift.repeat_interleave(self.scale * self.scale))
        self.requires_grad_(False)
        self.using(kernels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.kernels.prepare(x)
        s = self.sub_mean(x)
        first, *rest = self.order
        d = self.fswg[first](self.head(s), residual=False)
        for g in rest:
            d = self.fswg[g](d, residual=True)
        y = self.skip_up(self.skip_conv(s if self.scale == 4 else x))
        y = self.trunk_up.accumulate_(y, self.trunk_tail(d))
        return F.pixel_shuffle(y, self.scale).contiguous()

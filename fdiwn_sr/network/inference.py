"""The fused inference form: the folded network's arithmetic in fewer passes over memory.

Built from an :class:`~fdiwn_sr.network.FDIWN` (folded on a copy); computes the
same function (to float rounding) with these rewrites, each exact in real arithmetic:

- Shuffle attention is a per-channel gate ``z * sigmoid(a*z + b)`` whose ``a, b``
  come from the channel's mean and variance (its GroupNorm has one channel per
  group); the channel shuffle after it is folded into the preceding convolution's
  output channels wherever that convolution is the only producer.
- A wide unit's ``res_scale`` is folded into its last convolution (the gate's
  epsilon and coefficients are rescaled to match); ``scale_x`` into ``fuse2``; the
  FSWG's outer residual into its WIRW's identity coefficient; ``add_mean`` into
  the upsampling convolutions, whose two pixel shuffles become one.
- The coefficient units' two tiny MLPs run as one block-diagonal MLP; the
  wide units' 1x1 convolutions are widened with zero channels to multiples of 8.

On CPU in float32, convolutions run through oneDNN on channels-last tensors with
their activation or the following residual sum fused, 1x1 chains in blocks of
pixels that stay in cache (the fusion unit's concatenated input is only ever made
block by block), a gate's affine map and sigmoid as one depthwise 1x1 convolution,
variances as Gram diagonals, the shuffle after a sum as a permutation product.
Elsewhere (other devices, other dtypes, ONNX export) the same graph runs
on plain ``torch.nn.functional`` ops, which is also what an ONNX export records.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import FSWG, WDIB, CoefficientUnit, ShuffleAttention, WideUnit, channel_shuffle
from .fdiwn import FDIWN

__all__ = ["ONEDNN", "FusedFDIWN", "FusedFSWG", "FusedWDIB", "use_onednn"]

_CHANNELS_LAST = torch.channels_last
_SLOPE = 0.05
CANCELLATION = 64.0  # E[z^2] / var beyond which E[z^2] - mean^2 in float32 is not trusted
CHUNK = 8192  # pixels per block and thread in pointwise_chain: its widest tensor fits a core's L2 cache
# Maps from which a gate runs as a depthwise oneDNN convolution: below, its fixed cost per call
# (about 50 us) outweighs the pass it saves, and eager addcmul + sigmoid is faster (crossover measured
# at 128-256k pixels on a 2-core AVX-512 machine; 7 % faster per gate at 640x360, 6x slower at 16x16).
DEPTHWISE_GATE_PIXELS = 1 << 17


def _onednn_available() -> bool:
    ops = ("_convolution_pointwise", "_linear_pointwise")
    try:
        return torch.backends.mkldnn.is_available() and all(hasattr(torch.ops.mkldnn, op) for op in ops)
    except (AttributeError, RuntimeError):  # builds without the mkldnn op namespace
        return False


ONEDNN = _onednn_available()


def use_onednn(x: Tensor) -> bool:
    """Whether the fused oneDNN kernels apply to ``x``: CPU float32, oneDNN enabled, not being exported."""
    return (
        ONEDNN
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.enabled
        and not torch.onnx.is_in_onnx_export()
    )


def shuffle_source(c: int, groups: int) -> Tensor:
    """Input channel feeding each output channel of ``channel_shuffle(x, groups)``."""
    return torch.arange(c).view(groups, c // groups).t().reshape(-1)


@functools.cache
def shuffle_matrix(c: int, groups: int) -> Tensor:
    """``channel_shuffle`` on channels-last rows as a (C, C) float32 permutation matrix, made once."""
    return torch.eye(c)[shuffle_source(c, groups)]


def channel_stats(z: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and biased variance over H and W, shapes (B, C, 1, 1)."""
    if not use_onednn(z):
        mean = z.mean((2, 3), keepdim=True)
        return mean, (z - mean).square().mean((2, 3), keepdim=True)
    # Channels-last pixels as rows, cut into up to 8 blocks so that both reductions run on every
    # thread (a plain reduction to C outputs, or a C x C matrix product, runs on one). One read
    # each for the sums and for the sums of squares (the diagonal of a Gram matrix: no squares
    # stored); E[z^2] - mean^2 loses precision only where the mean dwarfs the spread, and such
    # channels are recomputed from centred rows.
    n, c, h, w = z.shape
    p = h * w
    split = next(k for k in (8, 4, 2, 1) if p % k == 0)
    blocks = z.permute(0, 2, 3, 1).reshape(n * split, p // split, c)

    def average(per_block: Tensor) -> Tensor:  # (n * split, c) block sums -> (n, 1, c) means
        return per_block.view(n, split, c).sum(1, keepdim=True) / p

    def mean_square(b: Tensor) -> Tensor:
        return average(torch.bmm(b.transpose(1, 2), b).diagonal(dim1=1, dim2=2))

    # Sums over rows of several pixels: a reduction to a row as narrow as 24 floats runs at half speed.
    wide = next(k for k in (16, 8, 4, 2, 1) if p // split % k == 0)
    mean = average(blocks.view(n * split, -1, wide * c).sum(1).view(n * split, wide, c).sum(1))
    square = mean_square(blocks)
    var = square - mean.square()
    if bool((var * CANCELLATION < square).any()):
        var = mean_square((blocks.view(n, p, c) - mean).view_as(blocks))
    return mean.view(n, c, 1, 1), var.view(n, c, 1, 1)


class Conv(nn.Module):
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

    def _geometry(self) -> tuple:
        return self.weight, self.bias, self.padding, [1, 1], [1, 1], self.groups

    def _attr(self) -> tuple[str, list[float]]:
        return ("leaky_relu", [_SLOPE]) if self.act == "leaky" else (self.act, [])

    def rows(self, x: Tensor) -> Tensor:
        """A 1x1 convolution on pixels as rows, (..., C_in) -> (..., C_out), on oneDNN."""
        return torch.ops.mkldnn._linear_pointwise(x, self.weight.flatten(1), self.bias, *self._attr(), "")

    def split_inputs(self, *sizes: int) -> list[Conv]:
        """Convolutions on consecutive groups of input channels whose outputs sum to this one's (bias in the first).

        Only a linear, ungrouped convolution splits so; anything else would change the function.
        """
        if self.act != "none" or self.groups != 1:
            raise ValueError(f"cannot split the inputs of a convolution with act={self.act!r}, groups={self.groups}")
        parts = self.weight.split(list(sizes), 1)
        return [Conv(w, self.bias if i == 0 else None) for i, w in enumerate(parts)]

    def forward(self, x: Tensor) -> Tensor:
        if use_onednn(x):
            if self.pointwise:  # a 1x1 convolution is a matrix product over the channels-last pixels
                return self.rows(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            return torch.ops.mkldnn._convolution_pointwise(_cl(x), *self._geometry(), *self._attr(), "")
        return _activate_(F.conv2d(x, self.weight, self.bias, padding=self.padding, groups=self.groups), self.act)

    def plus(self, x: Tensor, other: Tensor) -> Tensor:
        """``conv(x) + other`` (activation must be "none")."""
        if use_onednn(x):
            return torch.ops.mkldnn._convolution_pointwise.binary(
                _cl(x), other, *self._geometry(), "add", None, None, [], ""
            )
        return self(x) + other

    def accumulate_(self, out: Tensor, x: Tensor) -> Tensor:
        """``out += conv(x)`` in place (activation must be "none")."""
        if use_onednn(x) and out.is_contiguous(memory_format=_CHANNELS_LAST):
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                out, _cl(x), *self._geometry(), "add", None, None, [], ""
            )
        return out.add_(self(x))


def _activate_(y: Tensor, act: str) -> Tensor:
    if act == "relu":
        return y.relu_()
    if act == "sigmoid":
        return y.sigmoid_()
    if act == "leaky":
        return F.leaky_relu_(y, _SLOPE)
    return y


def _cl(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=_CHANNELS_LAST)


def _empty_cl(n: int, c: int, h: int, w: int, like: Tensor) -> Tensor:
    return torch.empty((n, c, h, w), dtype=like.dtype, device=like.device, memory_format=_CHANNELS_LAST)


def pointwise_chain(first: Conv, second: Conv, *xs: Tensor, side: Conv | None = None) -> list[Tensor]:
    """``[second(first(x))]``, and ``side(x)`` after it when given, for 1x1 convolutions on ``x``.

    ``x`` is the channel concatenation of ``xs``; on oneDNN it is never made, and
    the convolutions run over blocks of pixels: the middle of a wide unit is up
    to 112 channels wide, and computed a block of ``CHUNK`` pixels per thread at
    a time it stays in cache instead of going to memory and back, which halves
    the chain's time on large images.
    """
    if not use_onednn(xs[0]):
        x = torch.cat(xs, 1) if len(xs) > 1 else xs[0]
        return [second(first(x))] + ([side(x)] if side is not None else [])
    n, _, h, w = xs[0].shape
    rows = [x.permute(0, 2, 3, 1).reshape(n * h * w, -1) for x in xs]
    convs = [second] if side is None else [second, side]
    outs = [rows[0].new_empty(n * h * w, conv.weight.shape[0]) for conv in convs]
    step = CHUNK * torch.get_num_threads()
    for i in range(0, n * h * w, step):
        block = torch.cat([r[i : i + step] for r in rows], 1) if len(rows) > 1 else rows[0][i : i + step]
        outs[0][i : i + step] = second.rows(first.rows(block))
        if side is not None:
            outs[1][i : i + step] = side.rows(block)
    return [out.view(n, h, w, -1).permute(0, 3, 1, 2) for out in outs]


def round8(n: int) -> int:
    return -(-n // 8) * 8


class Gate(nn.Module):
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
        mean, var = channel_stats(z)
        a = self.ga * torch.rsqrt(var + self.eps)
        return a, self.c0 + (self.c1 - a) * mean

    def forward(self, z: Tensor, residual: Tensor | None = None, alpha: float = 1.0) -> Tensor:
        """``z * sigmoid(a*z + b)``, plus ``alpha * residual`` when given."""
        a, b = self.coefficients(z)
        n, c, h, w = z.shape
        # A per-channel affine map is a depthwise 1x1 convolution: with the sigmoid fused, one pass.
        if use_onednn(z) and n == 1 and h * w >= DEPTHWISE_GATE_PIXELS:
            t = torch.ops.mkldnn._convolution_pointwise(
                z, a.view(c, 1, 1, 1), b.view(c), [0, 0], [1, 1], [1, 1], c, "sigmoid", [], ""
            )
        else:
            t = torch.addcmul(b, a, z).sigmoid_()
        y = t.mul_(z)
        return y if residual is None else y.add_(residual, alpha=alpha)

    def shuffled(self, z: Tensor, groups: int = 2) -> Tensor:
        """``channel_shuffle(self(z), groups)``; on oneDNN the shuffle is a product with a permutation matrix.

        Exact (ones and zeros), and three times as fast as a copy or a multiplication
        with strided channels, which moves one float at a time.
        """
        y = self(z)
        if not use_onednn(z):
            return channel_shuffle(y, groups)
        permutation = shuffle_matrix(z.shape[1], groups)  # use_onednn: z is float32 on the CPU
        rows = torch.ops.mkldnn._linear_pointwise(y.permute(0, 2, 3, 1), permutation, None, "none", [], "")
        return rows.permute(0, 3, 1, 2)


class Wide(nn.Module):
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
        return self.gated(pointwise_chain(self.expand, self.reduce, x)[0], residual, alpha)

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


class Coefficient(nn.Module):
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
        mean, var = channel_stats(x)
        v = torch.cat([mean, var.sqrt()], 1).flatten(1)
        w = torch.sigmoid(F.relu(F.linear(F.relu(F.linear(v, self.w1, self.b1)), self.w2, self.b2)))
        c = x.shape[1]
        return ((w[:, :c] + w[:, c:]) * 0.5).view(-1, c, 1, 1)


def shuffled_concat(a: Tensor, b: Tensor, shuffle: int) -> Tensor:
    """``channel_shuffle(cat([a, b], 1), shuffle)``, in one pass on channels-last tensors."""
    if not use_onednn(a):
        return channel_shuffle(torch.cat([a, b], 1), shuffle)
    n, c, h, w = a.shape
    out = _empty_cl(n, 2 * c, h, w, like=a)
    # out channel m*shuffle + k holds input channel k*(2c/shuffle) + m; a holds k < shuffle/2
    per, half = 2 * c // shuffle, shuffle // 2
    view = out.view(n, per, shuffle, h, w)
    view[:, :, :half].copy_(a.view(n, half, per, h, w).transpose(1, 2))
    view[:, :, half:].copy_(b.view(n, half, per, h, w).transpose(1, 2))
    return out


class FusedWDIB(nn.Module):
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
        h = self.h
        a = F.leaky_relu_(self.wirw1(x), _SLOPE)
        p = self.wcrw1(a[:, h:])
        ub1 = torch.addcmul(x, self.coef_a1(p), p)
        ua1 = torch.addcmul(p, self.coef_b1(x), x)
        b = F.leaky_relu_(self.wirw2(ub1), _SLOPE)
        q = self.wcrw2(b[:, h:])
        ub2 = torch.addcmul(q, self.coef_a2(ua1), ua1).mul_(self.distill_gate1(b[:, :h]))
        ua2 = torch.addcmul(ua1, self.coef_b2(q), q).mul_(self.distill_gate2(a[:, :h]))
        oa, ob = self.wirw3(ua2), self.wirw4(ub2)
        narrow, gate = pointwise_chain(self.fusion.expand, self.fusion.reduce, oa, ob, side=self.fusion_gate)
        y = self.fusion.gated(narrow, x).addcmul_(gate, ob)
        for conv, half in zip(self.fusion_shortcut, (oa, ob), strict=True):
            y = conv.accumulate_(y, half)
        return self.sa.shuffled(y)


class FusedFSWG(nn.Module):
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
        c1 = self.fuse1(shuffled_concat(o1, o11, 4))
        out = self.wirw(x, extra_identity=1.0 if residual else 0.0).add_(o3, alpha=self.scale_x)
        return self.fuse2.accumulate_(out, shuffled_concat(c1, o3, 4))


def _fold_output_conv(up: nn.Conv2d, mix: Tensor, scale: int) -> tuple[Tensor, Tensor | None]:
    """Weights of ``up`` followed by a 1x1 colour mix applied after its pixel shuffle."""
    k = torch.kron(mix, torch.eye(scale * scale, dtype=mix.dtype, device=mix.device))
    w = torch.einsum("oc,cikl->oikl", k, up.weight)
    return w, None if up.bias is None else k @ up.bias


class FusedFDIWN(nn.Module):
    """The fused inference form of an FDIWN: same inputs and outputs, fewer passes.

    Copies the weights; an unfolded ``model`` is folded on a copy, never in place.
    """

    def __init__(self, model: FDIWN) -> None:
        super().__init__()
        if not model.folded:  # a fresh copy: deepcopy would share weight norm's parametrised classes
            unfolded, model = model, FDIWN(model.scale, model.variant)
            model.load_state_dict(unfolded.state_dict())
            model.fold()
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

    def forward(self, x: Tensor) -> Tensor:
        if use_onednn(x):
            x = x.contiguous(memory_format=_CHANNELS_LAST)
        s = self.sub_mean(x)
        first, *rest = self.order
        d = self.fswg[first](self.head(s), residual=False)
        for g in rest:
            d = self.fswg[g](d, residual=True)
        y = self.skip_up(self.skip_conv(s if self.scale == 4 else x))
        y = self.trunk_up.accumulate_(y, self.trunk_tail(d))
        return F.pixel_shuffle(y, self.scale).contiguous()

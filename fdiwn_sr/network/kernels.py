"""How the fused graph's operations run: plain PyTorch operations, or oneDNN's fused CPU kernels.

:mod:`fdiwn_sr.network.inference` says *what* the fused form computes; a kernel
set says *how* each of its few compound operations runs. The set is chosen
once, when a runner is built (:func:`kernels_for`), never per call:

- :class:`Plain`: ``torch.nn.functional`` operations on any device and dtype;
  what an ONNX export records.
- :class:`OneDNN`: CPU float32 only. Convolutions through oneDNN on
  channels-last tensors with their activation or the following residual sum
  fused; 1x1 chains over blocks of pixels that stay in cache; a gate's affine
  map and sigmoid as one depthwise 1x1 convolution on large maps; channel
  statistics from Gram diagonals; channel shuffles after a sum as a
  permutation product.

Both compute the same function to float rounding (``tests/test_backends.py``).
The sizes that steer the oneDNN kernels (:class:`OneDNN`'s arguments) only
change speed: every value gives the same result.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from .blocks import channel_shuffle

if TYPE_CHECKING:
    from .inference import Conv

__all__ = ["ONEDNN", "OneDNN", "Plain", "block_pixels_per_thread", "kernels_for"]

SLOPE = 0.05  # the network's LeakyReLU slope
CANCELLATION = 64.0  # E[z^2] / var beyond which E[z^2] - mean^2 in float32 is not trusted
_CHANNELS_LAST = torch.channels_last

# Bytes of cache one pixel of a 1x1 chain's block takes: its input (up to 48 channels), middle (up to
# 112) and output rows (up to 24) are 184 floats, 736 bytes; a block of a third of that per pixel in
# L2 measured best (8192 pixels on a 2 MiB-L2 Xeon core, 4096 4 % slower). Smaller caches are not
# measured, so blocks never go below those 8192 pixels per thread. A tuning knob: any value computes the
# same result.
CACHE_BYTES_PER_BLOCK_PIXEL = 256
MIN_BLOCK_PIXELS = 8192
DEFAULT_L2_BYTES = 1 << 20  # where the machine does not say
# Maps from which a gate runs as a depthwise oneDNN convolution: below, oneDNN's fixed cost per call
# (about 50 us) outweighs the pass it saves and eager addcmul + sigmoid is faster. Crossover measured at
# 128-256k pixels on a 2-core AVX-512 Xeon (7 % faster per gate at 640x360, 6x slower at 16x16). A
# tuning knob: both forms compute the same result.
DEPTHWISE_GATE_PIXELS = 1 << 17


def _onednn_available() -> bool:
    ops = ("_convolution_pointwise", "_linear_pointwise")
    try:
        return torch.backends.mkldnn.is_available() and all(hasattr(torch.ops.mkldnn, op) for op in ops)
    except (AttributeError, RuntimeError):  # builds without the mkldnn op namespace
        return False


ONEDNN = _onednn_available()


@functools.cache
def l2_cache_bytes() -> int:
    """One core's L2 cache as the machine reports it (sysconf, then sysfs), else :data:`DEFAULT_L2_BYTES`."""
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
        if size > 0:
            return size
    except (ValueError, OSError, AttributeError):
        pass
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2":
                text = (index / "size").read_text().strip().upper()
                scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
                return int(text.rstrip("KM")) * scale
        except (OSError, ValueError):
            continue
    return DEFAULT_L2_BYTES


def block_pixels_per_thread() -> int:
    """Pixels per thread in a block of a 1x1 chain: what fits one core's L2 cache (at least 8192, as measured)."""
    return max(MIN_BLOCK_PIXELS, l2_cache_bytes() // CACHE_BYTES_PER_BLOCK_PIXEL)


def shuffle_source(c: int, groups: int) -> Tensor:
    """Input channel feeding each output channel of ``channel_shuffle(x, groups)``."""
    return torch.arange(c).view(groups, c // groups).t().reshape(-1)


def _activate_(y: Tensor, act: str) -> Tensor:
    if act == "relu":
        return y.relu_()
    if act == "sigmoid":
        return y.sigmoid_()
    if act == "leaky":
        return F.leaky_relu_(y, SLOPE)
    return y


class Plain:
    """Plain ``torch.nn.functional`` operations: any device and dtype, and what an ONNX export records."""

    name = "plain"

    def prepare(self, x: Tensor) -> Tensor:
        """The network input in the memory layout the kernels want."""
        return x

    def conv(self, c: Conv, x: Tensor) -> Tensor:
        return _activate_(F.conv2d(x, c.weight, c.bias, padding=c.padding, groups=c.groups), c.act)

    def conv_plus(self, c: Conv, x: Tensor, other: Tensor) -> Tensor:
        """``conv(x) + other`` (activation "none")."""
        return self.conv(c, x) + other

    def conv_accumulate_(self, c: Conv, out: Tensor, x: Tensor) -> Tensor:
        """``out += conv(x)`` in place (activation "none")."""
        return out.add_(self.conv(c, x))

    def pointwise_chain(self, first: Conv, second: Conv, *xs: Tensor, side: Conv | None = None) -> list[Tensor]:
        """``[second(first(x))]``, and ``side(x)`` after it when given, for 1x1 convolutions on ``x = cat(xs)``."""
        x = torch.cat(xs, 1) if len(xs) > 1 else xs[0]
        return [self.conv(second, self.conv(first, x))] + ([self.conv(side, x)] if side is not None else [])

    def channel_stats(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample, per-channel mean and biased variance over H and W, shapes (B, C, 1, 1)."""
        mean = z.mean((2, 3), keepdim=True)
        return mean, (z - mean).square().mean((2, 3), keepdim=True)

    def gate_sigmoid(self, z: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """``sigmoid(a*z + b)`` for per-channel ``a, b`` of shape (B, C, 1, 1), in a new tensor."""
        return torch.addcmul(b, a, z).sigmoid_()

    def channel_shuffle(self, y: Tensor, groups: int) -> Tensor:
        return channel_shuffle(y, groups)

    def shuffled_concat(self, a: Tensor, b: Tensor, shuffle: int, *, scratch: bool = False) -> Tensor:
        """``channel_shuffle(cat([a, b], 1), shuffle)``.

        ``scratch``: the caller is done with the result before its thread asks
        for another one, so the kernels may hand out a buffer they reuse.
        """
        return channel_shuffle(torch.cat([a, b], 1), shuffle)


def _cl(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=_CHANNELS_LAST)


@functools.cache
def _shuffle_matrix(c: int, groups: int) -> Tensor:
    """``channel_shuffle`` on channels-last rows as a (C, C) float32 permutation matrix, made once."""
    return torch.eye(c)[shuffle_source(c, groups)]


class OneDNN(Plain):
    """oneDNN's fused CPU kernels on channels-last float32 tensors.

    ``block_pixels``: pixels per block of a 1x1 chain (default: what fits each
    thread's L2 cache, times the threads at the time of the call).
    ``depthwise_gate_pixels``: maps from this size up (batch 1) compute a gate
    as a depthwise convolution. Both steer speed only.
    """

    name = "onednn"

    def __init__(self, block_pixels: int | None = None, depthwise_gate_pixels: int = DEPTHWISE_GATE_PIXELS) -> None:
        if not ONEDNN:
            raise RuntimeError("this torch build has no oneDNN (mkldnn) fused operations")
        if block_pixels is not None and block_pixels < 1:
            raise ValueError(f"block_pixels must be positive, got {block_pixels}")
        self.block_pixels = block_pixels
        self.depthwise_gate_pixels = depthwise_gate_pixels
        self._per_thread = block_pixels_per_thread()
        self._threads = threading.local()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_threads"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _threads=threading.local())

    def _scratch(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """This thread's reusable channels-last buffer of ``shape`` (the last shape asked for only).

        The FSWG's two shuffled concatenations are its largest feature maps
        (48 channels: 44 MB at 640x360); glibc serves blocks that large (over
        32 MiB) with a fresh mmap each time, faulted in page by page. Reused,
        they cost nothing after the first call, without touching malloc's
        process-wide settings. One buffer per thread keeps a runner shareable.
        """
        held = getattr(self._threads, "buffer", None)
        inference = torch.is_inference_mode_enabled()
        if (
            held is None
            or held.shape != shape
            or held.dtype != like.dtype
            or held.device != like.device
            or held.is_inference() != inference
        ):
            held = torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=_CHANNELS_LAST)
            self._threads.buffer = held
        return held

    def prepare(self, x: Tensor) -> Tensor:
        return _cl(x)

    @staticmethod
    def _geometry(c: Conv) -> tuple:
        return c.weight, c.bias, c.padding, [1, 1], [1, 1], c.groups

    @staticmethod
    def _attr(c: Conv) -> tuple[str, list[float]]:
        return ("leaky_relu", [SLOPE]) if c.act == "leaky" else (c.act, [])

    def rows(self, c: Conv, x: Tensor) -> Tensor:
        """A 1x1 convolution on pixels as rows, (..., C_in) -> (..., C_out)."""
        return torch.ops.mkldnn._linear_pointwise(x, c.weight.flatten(1), c.bias, *self._attr(c), "")

    def conv(self, c: Conv, x: Tensor) -> Tensor:
        if c.pointwise:  # a 1x1 convolution is a matrix product over the channels-last pixels
            return self.rows(c, x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return torch.ops.mkldnn._convolution_pointwise(_cl(x), *self._geometry(c), *self._attr(c), "")

    def conv_plus(self, c: Conv, x: Tensor, other: Tensor) -> Tensor:
        return torch.ops.mkldnn._convolution_pointwise.binary(
            _cl(x), other, *self._geometry(c), "add", None, None, [], ""
        )

    def conv_accumulate_(self, c: Conv, out: Tensor, x: Tensor) -> Tensor:
        if not out.is_contiguous(memory_format=_CHANNELS_LAST):  # oneDNN adds in place into channels-last only
            return super().conv_accumulate_(c, out, x)
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            out, _cl(x), *self._geometry(c), "add", None, None, [], ""
        )

    def pointwise_chain(self, first: Conv, second: Conv, *xs: Tensor, side: Conv | None = None) -> list[Tensor]:
        """The chain over blocks of pixels; ``cat(xs)`` is only ever made one block at a time.

        The middle of a wide unit is up to 112 channels wide; computed a block
        at a time it stays in cache instead of going to memory and back, which
        halves the chain's time on large images.
        """
        n, _, h, w = xs[0].shape
        rows = [x.permute(0, 2, 3, 1).reshape(n * h * w, -1) for x in xs]
        convs = [second] if side is None else [second, side]
        outs = [rows[0].new_empty(n * h * w, conv.weight.shape[0]) for conv in convs]
        step = self.block_pixels or self._per_thread * torch.get_num_threads()
        for i in range(0, n * h * w, step):
            block = torch.cat([r[i : i + step] for r in rows], 1) if len(rows) > 1 else rows[0][i : i + step]
            outs[0][i : i + step] = self.rows(second, self.rows(first, block))
            if side is not None:
                outs[1][i : i + step] = self.rows(side, block)
        return [out.view(n, h, w, -1).permute(0, 3, 1, 2) for out in outs]

    def channel_stats(self, z: Tensor) -> tuple[Tensor, Tensor]:
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

    def gate_sigmoid(self, z: Tensor, a: Tensor, b: Tensor) -> Tensor:
        n, c, h, w = z.shape
        # A per-channel affine map is a depthwise 1x1 convolution: with the sigmoid fused, one pass.
        if n == 1 and h * w >= self.depthwise_gate_pixels:
            return torch.ops.mkldnn._convolution_pointwise(
                z, a.view(c, 1, 1, 1), b.view(c), [0, 0], [1, 1], [1, 1], c, "sigmoid", [], ""
            )
        return super().gate_sigmoid(z, a, b)

    def channel_shuffle(self, y: Tensor, groups: int) -> Tensor:
        """A product with a permutation matrix: exact (ones and zeros), and three times as fast as a
        copy or a multiplication with strided channels, which moves one float at a time."""
        permutation = _shuffle_matrix(y.shape[1], groups)
        rows = torch.ops.mkldnn._linear_pointwise(y.permute(0, 2, 3, 1), permutation, None, "none", [], "")
        return rows.permute(0, 3, 1, 2)

    def shuffled_concat(self, a: Tensor, b: Tensor, shuffle: int, *, scratch: bool = False) -> Tensor:
        """In one pass on channels-last tensors; a ``scratch`` result in this thread's reused buffer."""
        n, c, h, w = a.shape
        shape = (n, 2 * c, h, w)
        out = self._scratch(shape, a) if scratch else None
        if out is None:
            out = torch.empty(shape, dtype=a.dtype, device=a.device, memory_format=_CHANNELS_LAST)
        # out channel m*shuffle + k holds input channel k*(2c/shuffle) + m; a holds k < shuffle/2
        per, half = 2 * c // shuffle, shuffle // 2
        view = out.view(n, per, shuffle, h, w)
        view[:, :, :half].copy_(a.view(n, half, per, h, w).transpose(1, 2))
        view[:, :, half:].copy_(b.view(n, half, per, h, w).transpose(1, 2))
        return out


PLAIN = Plain()


def kernels_for(device: torch.device | str, dtype: torch.dtype = torch.float32) -> Plain:
    """The fastest kernel set for ``device`` and ``dtype`` here: oneDNN on the CPU in float32 (when this
    torch has it and it is enabled now), plain operations elsewhere."""
    device = torch.device(device)
    if ONEDNN and device.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.enabled:
        return OneDNN()
    return PLAIN

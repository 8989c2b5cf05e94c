"""Tiled inference: overlapping tiles, cross-faded so no seam shows, sized to the memory at hand.

FDIWN pools global statistics (channel means and standard deviations, group
normalisation), so a tile never sees exactly what the whole image sees and a
tiled result is close to, not equal to, the whole-image one. Neighbouring
tiles overlap by at least ``overlap`` low-resolution pixels and are
cross-faded with linear ramps across the whole shared band. The weights are
normalised per axis into a partition of unity, so the blend is continuous:
a small difference between two tiles fades out instead of stepping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

__all__ = [
    "BYTES_PER_PIXEL",
    "DEFAULT_OVERLAP",
    "MIN_TILE",
    "Plan",
    "check_options",
    "device_memory_available",
    "host_memory_available",
    "is_out_of_memory",
    "make_plan",
    "pixel_budget",
    "upscale_tiled",
]

MIN_TILE = 16  # below this the tiles' statistics stop resembling the image's
DEFAULT_OVERLAP = 16
# Peak activation memory per low-resolution pixel of the eager network in float32, measured
# on CPU (x2: 4.5-4.8 KiB, x4: 6.9 KiB), rounded up; each backend states its own (backends.py).
BYTES_PER_PIXEL = 7.5 * 1024
CPU_BUDGET = 2**30  # activation memory one CPU forward pass may use by default
GPU_SHARE = 0.5  # share of free accelerator memory one forward pass may use
FINAL_COPIES = 2  # result-sized buffers made after the network: the clamped copy, the caller's array or image

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Plan:
    """Where the tiles lie (low-resolution starts per axis), their size, and how many run per call."""

    tile_h: int
    tile_w: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    batch: int

    @property
    def tiles(self) -> int:
        return len(self.rows) * len(self.cols)


def host_memory_available() -> int | None:
    """Bytes of RAM available to a new allocation (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def device_memory_available(device: torch.device) -> int | None:
    """Free bytes on ``device`` (CUDA: mem_get_info; MPS: recommended maximum minus allocated)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "mps":
        mps = torch.mps
        if hasattr(mps, "recommended_max_memory"):
            return int(mps.recommended_max_memory() - mps.driver_allocated_memory())
        return None
    return host_memory_available()


def pixel_budget(device: torch.device, bytes_per_pixel: float = BYTES_PER_PIXEL) -> int:
    """Low-resolution pixels one forward call may hold (summed over the batch)."""
    free = device_memory_available(device)
    if device.type == "cpu":
        budget = CPU_BUDGET if free is None else min(CPU_BUDGET, free // 4)
    else:
        budget = CPU_BUDGET if free is None else int(free * GPU_SHARE)
    return max(MIN_TILE * MIN_TILE, int(budget // bytes_per_pixel))


def axis_starts(n: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Evenly spread tile starts covering 0..n with neighbours sharing at least ``overlap`` pixels."""
    if n <= tile:
        return (0,)
    k = math.ceil((n - tile) / (tile - overlap)) + 1
    return tuple(round(i * (n - tile) / (k - 1)) for i in range(k))


def axis_weights(starts: tuple[int, ...], tile: int, n: int, scale: int) -> list[torch.Tensor]:
    """Per-tile blending weights along one axis (output resolution), summing to 1 at every position."""
    size = min(tile, n) * scale
    p = torch.arange(size, dtype=torch.float64) + 0.5
    raw = []
    for i, a in enumerate(starts):
        w = torch.ones(size, dtype=torch.float64)
        if i > 0:  # ramp up across the band shared with the previous tile
            w = torch.minimum(w, p / ((starts[i - 1] - a) * scale + size))
        if i + 1 < len(starts):  # and down across the band shared with the next
            w = torch.minimum(w, (size - p) / ((a - starts[i + 1]) * scale + size))
        raw.append(w)
    total = torch.zeros(n * scale, dtype=torch.float64)
    for a, w in zip(starts, raw, strict=True):
        total[a * scale : a * scale + size] += w
    return [(w / total[a * scale : a * scale + size]).float() for a, w in zip(starts, raw, strict=True)]


def make_plan(
    height: int, width: int, images: int, budget: int, tile: int | None, overlap: int | None, batch: int | None
) -> Plan:
    """``tile``: None = whole image if it fits ``budget`` pixels, else the largest tile that does; 0 = whole.

    The options are checked again once the automatic choices are made: an
    overlap that the chosen tile cannot hold is a ValueError, never a blank or
    broken result.
    """
    automatic = tile is None
    if tile is None:
        tile = 0 if height * width <= budget else max(MIN_TILE, math.isqrt(budget) // 8 * 8)
    th, tw = (height, width) if tile == 0 else (min(tile, height), min(tile, width))
    if overlap is None:
        overlap = min(DEFAULT_OVERLAP, max(th, tw) // 4)
    tiled = [t for t, n in ((th, height), (tw, width)) if t < n]  # axes cut into several tiles
    if tiled and overlap > min(tiled) // 2:
        hint = (
            f"the memory budget allows tiles of {min(tiled)} pixels; lower tile_overlap to {min(tiled) // 2} or less"
            if automatic
            else f"lower tile_overlap to {min(tiled) // 2} or less, or use larger tiles"
        )
        raise ValueError(f"tile_overlap={overlap} is more than half a tile ({min(tiled)} pixels): {hint}")
    if batch is None:
        batch = max(1, budget // (th * tw))
    rows, cols = axis_starts(height, th, overlap), axis_starts(width, tw, overlap)
    return Plan(th, tw, rows, cols, max(1, min(batch, images * len(rows) * len(cols))))


def check_options(tile: int | None, overlap: int | None, batch: int | None) -> None:
    """The options on their own; :func:`make_plan` checks them again with the tile it picks."""
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or (tile != 0 and tile < MIN_TILE)):
        raise ValueError(f"tile must be None (automatic), 0 (whole image) or an integer >= {MIN_TILE}, got {tile!r}")
    if overlap is not None:
        limit = None if tile in (None, 0) else tile // 2
        bad_type = isinstance(overlap, bool) or not isinstance(overlap, int)
        if bad_type or overlap < 0 or (limit is not None and overlap > limit):
            raise ValueError(f"tile_overlap must be an integer in 0..{limit or 'tile/2'}, got {overlap!r}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch!r}")


def is_out_of_memory(e: BaseException) -> bool:
    if isinstance(e, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    message = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def upscale_tiled(
    forward: Forward,
    x: torch.Tensor,
    scale: int,
    device: torch.device,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    bytes_per_pixel: float = BYTES_PER_PIXEL,
    copies: int = FINAL_COPIES,
) -> torch.Tensor:
    """Run ``forward`` ((N, 3, h, w) -> (N, 3, sh, sw)) over ``x`` (B, 3, H, W) tile by tile.

    The result is assembled on ``x``'s device. ``device`` is where ``forward``
    runs; its free memory over ``forward``'s ``bytes_per_pixel`` sizes automatic tiles. Out of memory, the tile is
    halved (one tile per call) and the image redone, down to MIN_TILE. Before any work,
    :func:`check_memory` makes sure the input, the result and ``copies`` more result-sized
    buffers fit.
    """
    check_options(tile, overlap, batch_size)
    b, _, h, w = x.shape
    budget = pixel_budget(device, bytes_per_pixel)
    plan = make_plan(h, w, b, budget, tile, overlap, batch_size)  # a request that cannot run fails here
    check_memory(x, scale, copies)
    canvas = _allocate(b, h * scale, w * scale, x.device)
    while True:
        try:
            return _run(forward, x, scale, plan, canvas, progress)
        except (RuntimeError, MemoryError) as e:
            if not is_out_of_memory(e):
                raise
            side = max(plan.tile_h, plan.tile_w)
            if side <= MIN_TILE and plan.batch == 1:
                raise ValueError(
                    f"out of memory on {device} even with {MIN_TILE} x {MIN_TILE} tiles, one per call: "
                    "free memory or use another device"
                ) from e
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        tile, batch_size = max(MIN_TILE, side // 2), 1
        overlap = None if overlap is None else min(overlap, tile // 2)
        plan = make_plan(h, w, b, budget, tile, overlap, batch_size)
        canvas.zero_()


def check_memory(x: torch.Tensor, scale: int, copies: int = FINAL_COPIES) -> None:
    """Refuse, before any work, a request whose input, result and final copies cannot fit where the result goes.

    Counted: the float32 input ``x`` (already made, but it must stay), the
    float32 result, and ``copies`` more result-sized buffers made while giving
    it back (clamping, converting to the caller's type). Tiling only bounds the
    network's activations, so it cannot help here.
    """
    b, c, h, w = x.shape
    result = b * c * h * w * scale * scale * 4
    needed = x.numel() * 4 + result * (1 + copies)
    free = device_memory_available(x.device)
    if free is not None and needed > free:
        raise ValueError(
            f"upscaling {b} image(s) of {w} x {h} at x{scale} needs about {needed / 2**30:,.1f} GiB (the input as "
            f"float32, the {w * scale} x {h * scale} result and {copies} copies made to return it), more than the "
            f"{free / 2**30:,.1f} GiB available on {x.device}: upscale a smaller image or crop it into parts, or "
            "use a device with more memory (tiles bound only the network's working memory, not the result)"
        )


def _allocate(b: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """The output canvas; a failed allocation is a clear error."""
    try:
        return torch.zeros(b, 3, height, width, device=device)
    except (RuntimeError, MemoryError) as e:
        raise ValueError(f"cannot allocate the {width} x {height} upscaled result on {device}: {e}") from e


def _run(
    forward: Forward, x: torch.Tensor, scale: int, plan: Plan, canvas: torch.Tensor, progress: bool
) -> torch.Tensor:
    h, w = x.shape[2:]
    wy = [t.to(canvas.device) for t in axis_weights(plan.rows, plan.tile_h, h, scale)]
    wx = [t.to(canvas.device) for t in axis_weights(plan.cols, plan.tile_w, w, scale)]
    work = [(b, i, j) for b in range(x.shape[0]) for i in range(len(plan.rows)) for j in range(len(plan.cols))]
    th, tw = plan.tile_h, plan.tile_w
    with tqdm(total=len(work), desc="tiles", unit="tile", leave=False, disable=not progress or len(work) < 2) as bar:
        for k in range(0, len(work), plan.batch):
            chunk = work[k : k + plan.batch]
            tiles = torch.stack(
                [x[b, :, plan.rows[i] : plan.rows[i] + th, plan.cols[j] : plan.cols[j] + tw] for b, i, j in chunk]
            )
            out = forward(tiles).to(canvas.device, torch.float32)
            for (b, i, j), y in zip(chunk, out, strict=True):
                r, c = plan.rows[i] * scale, plan.cols[j] * scale
                canvas[b, :, r : r + th * scale, c : c + tw * scale] += y * (wy[i][:, None] * wx[j][None, :])
            bar.update(len(chunk))
    return canvas

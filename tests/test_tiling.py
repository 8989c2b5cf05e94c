"""Tiling: the plan covers the image, blending weights form a partition of unity, automatic sizes follow
free memory, out-of-memory halves the tile; on Set5 with the authors' weights tiles do not show."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fdiwn_sr import load_model, tiling
from fdiwn_sr.metrics import psnr_y


def nearest(s: int):
    """A pointwise 'network': tiled and whole-image results must agree exactly."""
    return lambda t: t.repeat_interleave(s, 2).repeat_interleave(s, 3)


@pytest.mark.parametrize("n", [1, 15, 64, 65, 100, 111, 257])
@pytest.mark.parametrize(("tile", "overlap"), [(16, 4), (32, 0), (32, 16), (64, 16), (48, 7)])
@pytest.mark.parametrize("scale", [2, 3])
def test_plan_covers_and_weights_sum_to_one(n, tile, overlap, scale):
    starts = tiling.axis_starts(n, tile, overlap)
    size = min(tile, n)
    assert starts[0] == 0 and starts[-1] + size == n
    assert all(b - a <= size - overlap for a, b in itertools.pairwise(starts))  # overlap at least
    total = torch.zeros(n * scale)
    for a, w in zip(starts, tiling.axis_weights(starts, size, n, scale), strict=True):
        assert w.shape == (size * scale,) and bool((w >= 0).all())
        total[a * scale : a * scale + size * scale] += w
    torch.testing.assert_close(total, torch.ones(n * scale), atol=1e-6, rtol=0)


def test_pointwise_forward_is_reproduced_exactly_by_tiles():
    x = torch.rand(2, 3, 45, 70)
    whole = nearest(3)(x)
    for tile, overlap in ((16, 4), (20, 0), (32, 16)):
        out = tiling.upscale_tiled(nearest(3), x, 3, torch.device("cpu"), tile=tile, overlap=overlap, batch_size=3)
        torch.testing.assert_close(out, whole, atol=1e-6, rtol=0)


def test_plan_is_automatic_from_the_memory_budget():
    whole = tiling.make_plan(100, 80, 1, budget=100 * 80, tile=None, overlap=None, batch=None)
    assert (whole.tile_h, whole.tile_w, whole.tiles) == (100, 80, 1)
    tiled = tiling.make_plan(100, 80, 1, budget=100 * 80 - 1, tile=None, overlap=None, batch=None)
    assert (tiled.tile_h, tiled.tile_w, tiled.tiles, tiled.batch) == (88, 80, 2, 1)  # isqrt(7999) // 8 * 8 = 88
    small = tiling.make_plan(20, 30, 7, budget=2000, tile=None, overlap=None, batch=None)
    assert small.tiles == 1 and small.batch == 3  # whole images, as many per call as the budget holds
    forced = tiling.make_plan(100, 80, 1, budget=10**9, tile=0, overlap=None, batch=None)
    assert forced.tiles == 1


def test_tile_size_follows_free_memory(monkeypatch):
    free = 3 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 80 * 2**30))
    cuda = tiling.pixel_budget(torch.device("cuda"))
    assert cuda == int(free * tiling.GPU_SHARE) // tiling.BYTES_PER_PIXEL
    free //= 8
    assert tiling.pixel_budget(torch.device("cuda")) < cuda
    monkeypatch.setattr(tiling, "host_memory_available", lambda: 64 * 2**30)
    assert tiling.pixel_budget(torch.device("cpu")) == tiling.CPU_BUDGET // tiling.BYTES_PER_PIXEL
    monkeypatch.setattr(tiling, "host_memory_available", lambda: 200 * 2**20)  # a small machine: a quarter of it
    assert tiling.pixel_budget(torch.device("cpu")) == 50 * 2**20 // tiling.BYTES_PER_PIXEL


def test_out_of_memory_halves_the_tile_and_retries():
    seen = []

    def forward(t):
        seen.append(tuple(t.shape))
        if t.shape[0] * t.shape[2] * t.shape[3] > 32 * 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return nearest(2)(t)

    x = torch.rand(1, 3, 100, 90)
    out = tiling.upscale_tiled(forward, x, 2, torch.device("cpu"), tile=None)
    torch.testing.assert_close(out, nearest(2)(x), atol=1e-6, rtol=0)
    assert seen[0] == (1, 3, 100, 90)  # whole image first, then 50, then 25-pixel tiles one per call
    assert {s[2:] for s in seen[1:]} == {(50, 50), (25, 25)} and seen[-1] == (1, 3, 25, 25)


def test_out_of_memory_at_the_smallest_tile_is_a_clear_error():
    def forward(t):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes")

    with pytest.raises(ValueError, match="out of memory on cpu even with 16 x 16 tiles"):
        tiling.upscale_tiled(forward, torch.rand(1, 3, 40, 40), 2, torch.device("cpu"))


def test_other_errors_are_not_taken_for_out_of_memory():
    def forward(t):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        tiling.upscale_tiled(forward, torch.rand(1, 3, 40, 40), 2, torch.device("cpu"))


def test_a_result_too_large_for_memory_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(tiling, "host_memory_available", lambda: 2**19)
    with pytest.raises(ValueError, match=r"of 64 x 64 at x4 needs about 0.0 GiB .* the 256 x 256 result"):
        tiling.upscale_tiled(nearest(4), torch.rand(1, 3, 64, 64), 4, torch.device("cpu"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tile": 8}, "tile must be None"),
        ({"tile": -1}, "tile must be None"),
        ({"tile": 32.0}, "tile must be None"),
        ({"tile": 32, "overlap": 17}, r"tile_overlap must be an integer in 0..16"),
        ({"overlap": -1}, "tile_overlap"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        tiling.upscale_tiled(nearest(2), torch.rand(1, 3, 40, 40), 2, torch.device("cpu"), **options)


# Set5 with the authors' weights: x4 whole images, x2 112 x 112 crops (x2 costs four times as much per pixel).
TILE = 64
SET5 = ("baby", "bird", "butterfly", "head", "woman")


def border_steps(d: np.ndarray, starts: tuple[int, ...], tile: int, n: int, s: int, axis: int) -> tuple[float, float]:
    """Largest mean |step| of ``d`` across a tile edge vs the largest anywhere else (along ``axis``)."""
    steps = np.abs(np.diff(d, axis=axis)).mean(axis=(1 - axis, 2))  # steps[k]: between pixels k and k + 1
    edges = {e * s - 1 for a in starts for e in (a, a + tile) if 0 < e < n}
    at_edges = np.array(sorted(edges), dtype=int)
    return float(steps[at_edges].max()), float(np.delete(steps, at_edges).max())


def tiled_and_whole(reference_dir, authors_pt, scale, crop, overlap=None, names=SET5):
    upscaler = load_model(scale, weights=authors_pt(scale), device="cpu")
    rows = []
    for name in names:
        lr = np.asarray(Image.open(reference_dir / "set5" / f"x{scale}" / "LR" / f"{name}.png").convert("RGB"))
        hr = np.asarray(Image.open(reference_dir / "set5" / f"x{scale}" / "HR" / f"{name}.png").convert("RGB"))
        if crop:
            lr, hr = lr[:crop, :crop], hr[: crop * scale, : crop * scale]
        x = lr.astype(np.float32) / 255  # float in, float out: no 8-bit rounding in the comparison
        whole = upscaler.upscale(x, tile=0)
        tiled = upscaler.upscale(x, tile=TILE, tile_overlap=overlap)
        rows.append((name, lr.shape[:2], hr, whole, tiled))
    return rows


def to8(a: np.ndarray) -> np.ndarray:
    return (a * 255).round().astype(np.uint8)


@pytest.mark.parametrize(("scale", "crop"), [(4, None), (2, 112)])
def test_set5_tiles_match_the_whole_image_and_show_no_seams(reference_dir, authors_pt, scale, crop):
    deltas = []
    for name, (h, w), hr, whole, tiled in tiled_and_whole(reference_dir, authors_pt, scale, crop):
        mse = float(((tiled.astype(np.float64) - whole) ** 2).mean())
        assert mse == 0 or 10 * math.log10(1 / mse) >= 50, name
        deltas.append(psnr_y(to8(tiled), hr, crop=scale) - psnr_y(to8(whole), hr, crop=scale))
        assert abs(deltas[-1]) <= 0.03, name
        d = (tiled.astype(np.float64) - whole) * 255
        for axis, n in ((0, h), (1, w)):
            starts = tiling.axis_starts(n, min(TILE, n), tiling.DEFAULT_OVERLAP)
            if len(starts) > 1:
                at_edges, elsewhere = border_steps(d, starts, min(TILE, n), n, scale, axis)
                assert at_edges <= elsewhere, (name, axis, at_edges, elsewhere)
    assert abs(float(np.mean(deltas))) <= 0.02  # Set5 mean PSNR-Y, the number the paper reports


def test_the_seam_criterion_catches_hard_seams(reference_dir, authors_pt):
    """Control: abutting tiles (overlap 0, 128 = 2 x 64) do show a step at the edge."""
    [(_, (h, w), _, whole, tiled)] = tiled_and_whole(reference_dir, authors_pt, 4, None, overlap=0, names=["baby"])
    assert (h, w) == (128, 128)
    at_edges, elsewhere = border_steps((tiled.astype(np.float64) - whole) * 255, (0, 64), 64, 128, 4, axis=1)
    assert at_edges > 1.5 * elsewhere

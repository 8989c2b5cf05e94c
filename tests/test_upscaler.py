"""Upscaler.upscale with the authors' x4 weights: every input kind back in its own form, alpha, gray,
16 bits, batching, threads, devices and precision, the cached top-level upscale(), bad input."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from image_samples import RGB8, pil_inputs
from PIL import Image

import fdiwn_sr
from fdiwn_sr import load_model, tiling, upscaler
from fdiwn_sr.network.blocks import CoefficientUnit, ShuffleAttention


@pytest.fixture(scope="module")
def up(authors_pt):
    return load_model(4, weights=authors_pt(4), device="cpu")


@pytest.fixture(scope="module")
def lr(reference_dir) -> np.ndarray:
    return np.asarray(Image.open(reference_dir / "set5" / "x4" / "LR" / "baby.png").convert("RGB"))


def network(up, rgb8: np.ndarray) -> np.ndarray:
    """The network alone on an 8-bit RGB array, rounded to 8 bits: what upscale must reproduce."""
    x = torch.from_numpy(rgb8.astype(np.float32)).permute(2, 0, 1)[None] / 255
    return (up.forward(x)[0].clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy()


def test_every_pil_mode_comes_back_in_its_mode_and_size(up):
    for name, im in pil_inputs().items():
        out = up.upscale(im)
        assert isinstance(out, Image.Image) and out.mode == im.mode, name
        assert out.size == (4 * im.width, 4 * im.height), name
        if im.mode == "P":
            assert out.info.get("transparency") == im.info.get("transparency"), name


def test_rgb_is_the_network_output(up):
    assert np.array_equal(np.asarray(up.upscale(Image.fromarray(RGB8))), network(up, RGB8))
    assert np.array_equal(up.upscale(RGB8), network(up, RGB8))


def test_gray_goes_through_as_rgb_and_back_to_one_channel(up):
    gray = RGB8[..., 1]
    out = up.upscale(Image.fromarray(gray))
    assert out.mode == "L"
    rgb = up.forward(torch.from_numpy(gray).float().expand(1, 3, -1, -1) / 255)
    assert np.array_equal(np.asarray(out), (rgb.mean(1)[0].clamp(0, 1) * 255).round().byte().numpy())


def test_alpha_gradient_survives_and_leaves_colour_alone(up):
    w = 32
    alpha = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (8, 1))
    rgba = np.concatenate([np.repeat(RGB8[:8, :1], w, axis=1), alpha[..., None]], axis=2)
    out = np.asarray(up.upscale(Image.fromarray(rgba)))
    a = out[..., 3].astype(np.float64)
    assert (np.diff(a, axis=1) >= 0).all() and a.min() == 0 and a.max() == 255
    ideal = np.interp((np.arange(4 * w) + 0.5) / 4 - 0.5, np.arange(w), alpha[0].astype(np.float64))
    assert np.abs(a - ideal).max() <= 1.0  # bicubic is exact on a linear ramp
    assert np.array_equal(out[..., :3], network(up, rgba[..., :3]))


def test_sixteen_bit_ramp_keeps_far_more_than_256_levels(up):
    y, x = np.mgrid[0:24, 0:32]
    ramp = ((x * 24 + y) * 65535 / (32 * 24 - 1)).round().astype(np.uint16)
    for image in (Image.fromarray(ramp), np.repeat(ramp[..., None], 3, axis=2)):
        out = np.asarray(up.upscale(image))
        assert out.dtype == np.uint16 and out.shape[:2] == (96, 128)
        assert np.unique(out).size > 4096
        assert np.count_nonzero(out % 257) > out.size // 2  # not 8-bit values stretched to 16 bits


def test_numpy_and_torch_outputs_mirror_their_inputs(up):
    for a in (RGB8, RGB8[..., 0], RGB8[..., :1], RGB8.astype(np.uint16) * 257, RGB8 / 255.0, RGB8 / np.float32(255)):
        out = up.upscale(a)
        assert out.dtype == a.dtype and out.shape == (36, 52, *a.shape[2:])
    t = torch.from_numpy(RGB8).permute(2, 0, 1).float() / 255
    for x in (t, t[None], t.half(), t[None].double().expand(2, -1, -1, -1)):
        out = up.upscale(x)
        assert out.dtype == x.dtype and out.shape == (*x.shape[:-2], 36, 52) and out.device == x.device
    assert float(up.upscale(t).min()) >= 0 and float(up.upscale(t).max()) <= 1


def test_paths_and_lists_batch_same_size_images(up, tmp_path, lr):
    a, b, c = lr[:20, :24], lr[30:50, 40:64], lr[:16, :16]
    Image.fromarray(b).save(tmp_path / "b.png")
    out = up.upscale([a, tmp_path / "b.png", torch.tensor(c).permute(2, 0, 1).float() / 255])
    assert isinstance(out[0], np.ndarray) and isinstance(out[1], Image.Image) and isinstance(out[2], torch.Tensor)
    alone = [network(up, a), network(up, b)]  # a and b ran as one batch of two
    for got, want in zip(out[:2], alone, strict=True):
        assert np.abs(np.asarray(got, dtype=int) - want).max() <= 1
    with pytest.raises(ValueError, match="list of images is empty"):
        up.upscale([])


def test_four_threads_get_exactly_the_sequential_results(up, lr):
    crops = [lr[i * 20 : i * 20 + 40, j * 30 : j * 30 + 44].astype(np.float32) / 255 for i in (0, 2) for j in (0, 2)]
    sequential = [up.upscale(c, tile=32) for c in crops]
    start = threading.Barrier(4)

    def work(c):
        start.wait()
        return [up.upscale(c, tile=32) for _ in range(2)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, crops))
    for want, got in zip(sequential, results, strict=True):
        assert all(np.array_equal(g, want) for g in got)


def test_device_is_chosen_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert upscaler.default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert upscaler.default_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert upscaler.default_device() == torch.device("cuda")


def test_low_precision_keeps_statistics_in_float32(authors_pt, up):
    """bf16 autocast on the CPU (no GPU here): the blocks take their global mean/std and group norms in float32."""
    half = load_model(4, weights=authors_pt(4), device="cpu", dtype=torch.bfloat16)
    seen = set()
    sites = [m.gn for m in half._placement.runner.model.modules() if isinstance(m, ShuffleAttention)]
    sites += [m.mean_branch for m in half._placement.runner.model.modules() if isinstance(m, CoefficientUnit)]
    hooks = [m.register_forward_pre_hook(lambda _m, args: seen.add(args[0].dtype)) for m in sites]
    x = RGB8.astype(np.float32) / 255
    low = half.upscale(x)
    for h in hooks:
        h.remove()
    assert seen == {torch.float32}
    assert "dtype=bfloat16" in repr(half)
    mse = float(((low.astype(np.float64) - up.upscale(x)) ** 2).mean())
    assert 10 * np.log10(1 / mse) > 40


def test_to_changes_dtype_in_place_without_reading_the_weights_again(authors_pt, tmp_path):
    """float32 -> bfloat16 -> float32 on the CPU: each step gives what a fresh load with that dtype gives,
    from the network in memory (its weights file is gone by then)."""
    weights = tmp_path / "x4.pt"
    weights.write_bytes(authors_pt(4).read_bytes())
    moved = load_model(4, weights=weights, device="cpu")
    model, fp32_backend = moved.model, moved.backend
    x = torch.from_numpy(RGB8[:24, :20].astype(np.float32) / 255).permute(2, 0, 1)[None]
    before = moved.forward(x)
    weights.unlink()  # reading the weights again would now fail
    assert moved.to(dtype=torch.bfloat16) is moved
    assert (moved.dtype, moved.device, moved.backend) == (torch.bfloat16, torch.device("cpu"), "torch")
    fresh = load_model(4, weights=authors_pt(4), device="cpu", dtype=torch.bfloat16)
    low = moved.forward(x)
    torch.testing.assert_close(low, fresh.forward(x), atol=1e-6, rtol=0)
    assert 0 < float((low - before).abs().max()) < 0.05  # really bfloat16, and still the same picture
    moved.to(torch.float32)  # a dtype alone, as nn.Module.to takes it
    assert (moved.dtype, moved.backend, moved.model) == (torch.float32, fp32_backend, model)
    torch.testing.assert_close(moved.forward(x), before, atol=2e-6, rtol=0)


def test_to_keeps_a_backend_asked_for_and_refuses_where_it_cannot_run(authors_pt):
    fused = load_model(4, weights=authors_pt(4), device="cpu", backend="torch-fused")
    with pytest.raises(ValueError, match="cannot run"):
        fused.to(dtype=torch.bfloat16)
    assert (fused.dtype, fused.backend) == (torch.float32, "torch-fused")  # a refused move changes nothing
    assert fused.to("cpu").backend == "torch-fused"


def test_forward_is_the_network_on_0_to_1(up, lr):
    """A real photo in [0, 1] comes out in [0, 1] (up to overshoot) with the same brightness: the
    public tensor range is [0, 1] end to end, not the network's 0..255."""
    x = torch.from_numpy(lr.astype(np.float32) / 255).permute(2, 0, 1)[None]
    y = up.forward(x)
    assert y.shape == (1, 3, 4 * x.shape[2], 4 * x.shape[3])
    assert float(y.min()) > -0.1 and float(y.max()) < 1.1
    assert abs(float(y.mean()) - float(x.mean())) < 0.01


def test_bad_precision_is_refused(authors_pt):
    with pytest.raises(ValueError, match="dtype must be"):
        load_model(4, weights=authors_pt(4), device="cpu", dtype=torch.int8)


def test_top_level_upscale_reuses_its_model(authors_pt, up):
    fdiwn_sr._cached_model.cache_clear()
    first = fdiwn_sr.upscale(RGB8, weights=authors_pt(4), device="cpu")
    second = fdiwn_sr.upscale(Image.fromarray(RGB8), 4, weights=authors_pt(4), device="cpu", tile=0)
    info = fdiwn_sr._cached_model.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert np.array_equal(first, np.asarray(second)) and np.array_equal(first, network(up, RGB8))


@pytest.mark.parametrize(
    ("image", "options", "error", "message"),
    [
        ("missing.png", {}, FileNotFoundError, "no such image file"),
        (np.zeros((0, 4, 3), np.uint8), {}, ValueError, "empty"),
        (np.zeros((4, 4, 6), np.uint8), {}, ValueError, "C in 1..4"),
        (np.full((4, 4, 3), np.inf, np.float32), {}, ValueError, "NaN or infinite"),
        (torch.full((3, 4, 4), 2.0), {}, ValueError, r"must lie in \[0, 1\]"),
        ({"not": "an image"}, {}, TypeError, "expected a PIL image, numpy array"),
        (RGB8, {"tile": 4}, ValueError, "tile must be"),
        (RGB8, {"tile": 32, "tile_overlap": 20}, ValueError, "tile_overlap"),
        (RGB8, {"batch_size": -2}, ValueError, "batch_size"),
    ],
)
def test_bad_input_gets_a_clear_error(up, image, options, error, message):
    with pytest.raises(error, match=message):
        up.upscale(image, **options)


def test_a_request_too_large_for_any_tile(up, monkeypatch):
    monkeypatch.setattr(tiling, "host_memory_available", lambda: 2**12)  # 4 KiB: not even the result fits
    with pytest.raises(ValueError, match=r"of 13 x 9 at x4 needs about .* the 52 x 36 result"):
        up.upscale(RGB8)

    def no_memory(placement, x):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.undo()
    monkeypatch.setattr(up, "_run", no_memory)
    with pytest.raises(ValueError, match="out of memory on cpu even with 16 x 16 tiles"):
        up.upscale(RGB8)


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(*argv) -> str:
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, check=True).stdout


def test_quickstart_example(authors_pt, tmp_path):
    out = run_example(EXAMPLES / "quickstart.py", "--weights", authors_pt(4), "--output", tmp_path / "s.png")
    assert "sample.png (128, 96) ->" in out and "(512, 384)" in out
    assert "ndarray -> float32 array (384, 512)" in out and "PIL I;16 (512, 384)" in out and "PIL RGBA" in out
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (512, 384)


def test_large_image_tiled_example(authors_pt, tmp_path):
    out = run_example(
        EXAMPLES / "large_image_tiled.py",
        *("--weights", authors_pt(2), "--size", 160, "--tile", 96, "--compare", "--output", tmp_path / "l.png"),
    )
    assert "160 x 120 on cpu: 4 tile(s) of 96 x 96" in out and "upscaled to 320 x 240" in out
    assert float(out.split("PSNR ")[1].split()[0]) >= 50

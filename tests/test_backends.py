"""Every backend computes the training form's function: golden inputs at x2/x3/x4 and 8-bit Set5 outputs."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fdiwn_sr import Upscaler
from fdiwn_sr.backends import BACKENDS, available, make_runner
from fdiwn_sr.checkpoints import load_network
from fdiwn_sr.network import FDIWN
from fdiwn_sr.network.kernels import ONEDNN

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from speed import peak_bytes  # the benchmark's own peak measurement, reused

CPU = torch.device("cpu")
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
FAST = [
    pytest.param("torch-fused", marks=pytest.mark.skipif(not ONEDNN, reason="this torch has no oneDNN")),
    pytest.param("onnxruntime", marks=pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")),
]
ALL = ["torch", *FAST]


@pytest.fixture(scope="module", autouse=True)
def cache_home(tmp_path_factory) -> Path:
    """ONNX exports are cached under FDIWN_SR_HOME: a private one, never the user's."""
    home = tmp_path_factory.mktemp("fdiwn_sr_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FDIWN_SR_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def training(authors_pt):
    """The training form (weight norm and scalars unfolded) per scale: the reference every backend must match."""
    cache: dict[int, FDIWN] = {}

    def get(scale: int) -> FDIWN:
        if scale not in cache:
            cache[scale] = load_network(authors_pt(scale), scale).eval()
        return cache[scale]

    return get


@pytest.fixture(scope="module")
def runner(authors_pt):
    """One runner per (backend, scale), built from a fresh network as Upscaler does."""
    cache = {}

    def get(backend: str, scale: int):
        if (backend, scale) not in cache:
            cache[backend, scale] = make_runner(load_network(authors_pt(scale), scale), CPU, None, backend)
        return cache[backend, scale]

    return get


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("backend", ALL)
def test_golden_inputs_match_training_form(backend, scale, runner, training, reference_dir: Path):
    golden = load_file(reference_dir / "golden" / f"official_x{scale}.safetensors")
    run = runner(backend, scale)
    assert run.name == backend
    for key, tolerance in (("input_crop", 1e-3), ("input_noise", 5e-3)):
        x = golden[key]
        with torch.inference_mode():
            expected = training(scale)(x)
        y = run(x)
        assert y.shape == (1, 3, scale * x.shape[2], scale * x.shape[3]) and y.dtype == torch.float32
        assert max_diff(y, expected) <= tolerance, f"{backend} x{scale} {key}"


def set5_8bit(fn, lr_dir: Path, names: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        x = torch.from_numpy(np.asarray(Image.open(lr_dir / name).convert("RGB"), dtype=np.float32))
        with torch.inference_mode():
            y = fn(x.permute(2, 0, 1)[None])
        out[name] = y[0].clamp(0, 255).round().byte().numpy()
    return out


# The whole of Set5 at x4; the two smallest images at x2 and x3 keep the test quick.
SET5 = {4: ["baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"], 3: ["butterfly.png", "woman.png"]}
SET5[2] = SET5[3]


@pytest.mark.parametrize("backend", FAST)
def test_set5_8bit_outputs_match_training_form(backend, runner, training, reference_dir: Path):
    for scale, names in SET5.items():
        lr = reference_dir / "set5" / f"x{scale}" / "LR"
        ours = set5_8bit(runner(backend, scale), lr, names)
        expected = set5_8bit(training(scale), lr, names)
        for name in names:
            diff = np.abs(ours[name].astype(np.int16) - expected[name])
            assert diff.max() <= 1, f"{backend} x{scale} {name}: {diff.max()} levels off"
            assert (diff > 0).mean() <= 0.001, f"{backend} x{scale} {name}: {100 * (diff > 0).mean():.3f} % px off"


def test_default_is_the_fused_form_on_cpu_float32_and_torch_elsewhere(authors_pt):
    upscaler = Upscaler(load_network(authors_pt(4), 4), "cpu")
    assert upscaler.backend == ("torch-fused" if ONEDNN else "torch")
    assert available("cpu", torch.bfloat16) == ["torch"]
    assert available("meta") == ["torch"]
    assert available("cpu")[-1] == "torch" and set(available("cpu")) <= set(BACKENDS)


def test_bad_backend_requests_are_clear_value_errors(authors_pt, monkeypatch):
    model = load_network(authors_pt(4), 4)
    with pytest.raises(ValueError, match=r"unknown backend 'tensorrt'.*torch-fused"):
        make_runner(model, CPU, None, "tensorrt")
    with pytest.raises(ValueError, match=r"'torch-fused' cannot run on cpu with dtype torch\.float16"):
        make_runner(model, CPU, torch.float16, "torch-fused")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # how Python marks a module as not importable
    with pytest.raises(ImportError, match=r"onnxruntime backend needs .*pip install 'fdiwn-sr\[onnx\]'"):
        make_runner(model, CPU, None, "onnxruntime")


@pytest.mark.skipif(not ONEDNN, reason="this torch has no oneDNN")
def test_fused_runner_batches_threads_and_leaves_the_model_alone(authors_pt, training):
    model = load_network(authors_pt(4), 4)
    run = make_runner(model, CPU, None, "torch-fused")
    assert not model.folded, "building the fused form must not fold the caller's network"
    x = torch.rand(2, 3, 21, 30, generator=torch.Generator().manual_seed(0)) * 255  # noise: the 5e-3 tolerance
    with torch.inference_mode():
        expected = training(4)(x)
    batch = run(x)
    assert max_diff(batch, expected) <= 5e-3
    results: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        results[i] = run(x[i : i + 1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):  # a batch is per-sample (statistics never mix images), threads share one runner
        # Noise input: outputs reach several hundred, so batch-vs-single reordering sits near 1e-3.
        assert max_diff(results[i], batch[i : i + 1]) <= 5e-3
        assert torch.equal(results[i], run(x[i : i + 1]))


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_onnxruntime_reuses_its_cached_export_and_replaces_a_damaged_one(runner, authors_pt, cache_home, monkeypatch):
    from fdiwn_sr import onnx_export

    runner("onnxruntime", 4)  # exported once, into the cache
    (cached,) = (cache_home / "onnx").glob("fdiwn_x4_fdiwn-*.onnx")
    good = cached.read_bytes()
    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(2)) * 255
    expected = runner("onnxruntime", 4)(x)

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this network")

    monkeypatch.setattr(onnx_export, "onnx_bytes", no_export)
    assert torch.equal(make_runner(load_network(authors_pt(4), 4), CPU, None, "onnxruntime")(x), expected)
    cached.write_bytes(b"not an onnx file")
    monkeypatch.setattr(onnx_export, "onnx_bytes", lambda model, opset: good)
    assert torch.equal(make_runner(load_network(authors_pt(4), 4), CPU, None, "onnxruntime")(x), expected)
    assert cached.read_bytes() == good


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable peak RSS")
@pytest.mark.parametrize("backend", ALL)
def test_bytes_per_pixel_covers_the_measured_peak(runner, backend):
    # x4 has the widest units; a 96x128 input keeps the fixed overheads of small tiles in the figure.
    run = runner(backend, 4)
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0)) * 255
    run(x)
    peak = peak_bytes(lambda: run(x)) or 0
    assert 0 < peak <= run.bytes_per_pixel * 96 * 128, (backend, peak / (96 * 128) / 1024)


def test_default_cpu_plan_runs_a_720p_x2_output_whole(authors_pt, monkeypatch):
    from fdiwn_sr import tiling

    monkeypatch.setattr(tiling, "host_memory_available", lambda: 16 * 2**30)
    up = Upscaler(load_network(authors_pt(2), 2), "cpu")
    plan = tiling.make_plan(360, 640, 1, tiling.pixel_budget(up.device, up.bytes_per_pixel), None, None, None)
    assert plan.tiles == 1, up.backend


@pytest.mark.parametrize("offset", [0.0, 3.0, 1e4])
def test_channel_statistics_stay_exact_when_the_mean_dwarfs_the_spread(offset):
    # E[z^2] - mean^2 in float32 would lose every digit of the variance at offset 1e4 (std 1);
    # such channels must be recomputed from centred values.
    from fdiwn_sr.network.kernels import OneDNN

    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 24, 90, 160, generator=g) * torch.linspace(0.5, 2.0, 24).view(1, -1, 1, 1) + offset
    z = z.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        mean, var = OneDNN().channel_stats(z)
    z64 = z.double()
    assert torch.allclose(mean.double(), z64.mean((2, 3), keepdim=True), rtol=1e-6, atol=1e-4)
    assert torch.allclose(var.double(), z64.var((2, 3), unbiased=False, keepdim=True), rtol=1e-4)


@pytest.mark.skipif(not ONEDNN, reason="this torch has no oneDNN")
@pytest.mark.parametrize("depthwise_gates", [True, False])
def test_fused_block_on_onednn_equals_the_training_block_across_pixel_blocks(authors_pt, depthwise_gates):
    # 130x150 = 19,500 pixels in 4096-pixel blocks (a kernel parameter, so whatever the thread count):
    # the 1x1 chains cross four block boundaries and the fusion unit's input is concatenated block by
    # block. Also the gates (as depthwise convolutions, which large maps get, or eager) and the
    # permutation-product shuffle, against the plain WDIB and the same graph on the plain kernels.
    from fdiwn_sr.network.inference import FusedWDIB
    from fdiwn_sr.network.kernels import PLAIN, OneDNN

    kernels = OneDNN(block_pixels=4096, depthwise_gate_pixels=0 if depthwise_gates else 1 << 30)
    block = load_network(authors_pt(2), 2).fold().fswg[0].wdib1
    fused = FusedWDIB(block).using(kernels)
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(1, 24, 130, 150, generator=g) * 20).contiguous(memory_format=torch.channels_last)
    calls = []
    chain = kernels.pointwise_chain

    def counted(*args, **kwargs):
        calls.append(args[2].shape[2] * args[2].shape[3])
        return chain(*args, **kwargs)

    kernels.pointwise_chain = counted
    with torch.inference_mode():
        expected = block(x)
        fast = fused(x)
        plain = fused.using(PLAIN)(x)
    assert calls and min(calls) > 4 * 4096  # every chain of this block ran over five blocks
    scale = expected.abs().max().item()
    assert max_diff(fast, expected) <= 1e-5 * scale, (max_diff(fast, expected), scale)
    assert max_diff(plain, expected) <= 1e-5 * scale

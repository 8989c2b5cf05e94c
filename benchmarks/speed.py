"""Speed of every backend beside the training form and the authors' own code, in one interleaved run.

For each scale: a 1280x720 output (LR input 1280/s x 720/s), the same weights
everywhere. Every round calls each contender once, in a rotating order; the
figures are medians over rounds, so load that comes and goes hits everyone
alike. Also: effective GMAC/s (multiply-adds counted by hooks on the training
form's convolutions) beside a dense 64-channel 3x3 convolution timed in the
same rounds, peak memory of one call, setup and first-call latency, and
8-bit output agreement with the authors' code (or the training form).

    python benchmarks/speed.py --authors-code /path/to/FDIWN/FDIWN_TrainCode/code

writes the results between the markers in docs/performance.md (``--no-write``
only prints them). ``--authors-code`` is the folder holding the authors'
``model`` package (public repository 24wenjie-li/FDIWN); without it our
training form is the baseline. Weights: the authors' checkpoints
``FDIWNx{2,3,4}.pt`` from ``--checkpoints`` (default: the reference folder).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fdiwn_sr import Upscaler, allocator, tiling  # noqa: E402
from fdiwn_sr.backends import available, make_runner  # noqa: E402
from fdiwn_sr.checkpoints import load_network  # noqa: E402

BEGIN, END = "<!-- speed.py results: begin -->", "<!-- speed.py results: end -->"
AUTHORS, TRAINING = "authors' code", "training form"
AUTHORS_TUNED = "authors' code, malloc tuned as ours"


def reference_dir() -> Path:
    return Path(os.environ.get("FDIWN_SR_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))


def machine() -> list[str]:
    """A few lines describing where the figures come from."""
    cpu = platform.processor() or "unknown CPU"
    flags: set[str] = set()
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = set(next(line for line in info.splitlines() if line.startswith("flags")).split())
    except (OSError, StopIteration):
        pass
    isa = [f for f in ("avx512f", "avx2", "fma", "neon", "asimd") if f in flags]
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "not installed"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"CPU: {cpu}, {cores} cores usable ({', '.join(isa) or 'ISA flags unknown'}); "
        f"{torch.get_num_threads()} torch threads",
        f"Software: Python {platform.python_version()}, torch {torch.__version__}, onnxruntime {ort}, "
        f"{platform.system()} {platform.release()}",
    ]


def load_avg() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every convolution in one forward pass (hooks on the training form)."""
    total = 0

    def hook(m: nn.Conv2d, _inputs, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total


def authors_model(code_dir: Path, scale: int, checkpoint: Path) -> nn.Module:
    """The authors' MODEL class from their repository, with their checkpoint loaded strictly."""
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    module = importlib.import_module(f"model.FDIWNx{scale}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # their torch.nn.utils.weight_norm is deprecated
        model = module.MODEL(types.SimpleNamespace(n_feats=64))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return model.eval()


def _authors_worker(
    conn, code_dir: Path, scale: int, checkpoint: Path, x: torch.Tensor, threads: int, tune: bool
) -> None:
    """Child process: the authors' model, run on request; its own malloc, untouched unless ``tune``."""
    if tune:
        allocator.keep_freed_memory()
    torch.set_num_threads(threads)
    t = time.perf_counter()
    model = authors_model(code_dir, scale, checkpoint)
    conn.send(time.perf_counter() - t)
    with torch.inference_mode():
        while (command := conn.recv()) != "stop":
            if command == "run":
                model(x)
                conn.send(None)
            elif command == "output":
                conn.send(to_8bit(model(x)))
            elif command == "peak":
                conn.send(peak_bytes(lambda: model(x)))


class AuthorsProcess:
    """The authors' code in a process of its own, called in lock-step from the rounds.

    Our allocator tuning (``fdiwn_sr.allocator``, on in this benchmark as in
    our CLI) is process-wide: in our process it would speed up their code
    too, which is not how it runs for its users. The pipe round trip adds well under a millisecond.
    """

    def __init__(self, code_dir: Path, scale: int, checkpoint: Path, x: torch.Tensor, tune: bool) -> None:
        spawn = mp.get_context("spawn")
        self.conn, child = spawn.Pipe()
        self.process = spawn.Process(
            target=_authors_worker,
            args=(child, code_dir, scale, checkpoint, x, torch.get_num_threads(), tune),
            daemon=True,
        )
        self.process.start()
        self.setup = self.conn.recv()

    def ask(self, command: str) -> object:
        self.conn.send(command)
        return self.conn.recv()

    def __call__(self) -> None:
        self.ask("run")

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join()


def reset_peak() -> int:
    """Reset the kernel's resident-set high-water mark; returns resident bytes now (Linux only, else 0)."""
    gc.collect()
    libc = allocator.glibc()
    if libc is not None:  # the heap's free memory back to the kernel: the tuned allocator keeps it otherwise
        libc.malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS") * 1024
    except OSError:
        return 0


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def peak_bytes(fn: Callable[[], object]) -> int | None:
    """Resident memory one call adds at its peak, or None where the kernel cannot tell."""
    base = reset_peak()
    if not base:
        return None
    fn()
    return _status_kib("VmHWM") * 1024 - base


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    names = list(contenders)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            contenders[n]()
            times[n].append(time.perf_counter() - t)
    return times


def to_8bit(y: torch.Tensor) -> np.ndarray:
    return y.detach().float().clamp(0, 255).round().to(torch.uint8).cpu().numpy()


def dense_conv(h: int, w: int, channels_last: bool) -> tuple[Callable[[], object], int]:
    x = torch.rand(1, 64, h, w)
    weight, bias = torch.randn(64, 64, 3, 3) * 0.05, torch.zeros(64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return F.conv2d(x, weight, bias, padding=1)

    return run, 64 * 64 * 9 * h * w


def bench_scale(args: argparse.Namespace, scale: int) -> list[str]:
    width, height = args.size
    h, w = height // scale, width // scale
    checkpoint = args.checkpoints / f"FDIWNx{scale}.pt"
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(scale)) * 255
    image = Image.fromarray(x[0].round().byte().permute(1, 2, 0).numpy(), "RGB")
    x = x.round()  # the image and the tensor carry the same pixels

    training = load_network(checkpoint, scale).eval()
    macs = count_macs(training, x)
    nets: dict[str, Callable[[], torch.Tensor]] = {}
    setup: dict[str, float] = {}
    workers = {}
    if args.authors_code:
        for name, tune in ((AUTHORS, False), (AUTHORS_TUNED, True)):
            workers[name] = AuthorsProcess(args.authors_code, scale, checkpoint, x, tune)
            setup[name] = workers[name].setup
    allocator.keep_freed_memory()  # the benchmark owns its process, as the CLI does: our contenders run tuned
    nets[TRAINING] = lambda: training(x)
    for name in args.backends:
        t = time.perf_counter()
        runner = make_runner(load_network(checkpoint, scale), torch.device("cpu"), None, name)
        setup[f"backend {name}"] = time.perf_counter() - t
        nets[f"backend {name}"] = lambda runner=runner: runner(x)
    t = time.perf_counter()
    upscaler = Upscaler(load_network(checkpoint, scale), "cpu")
    setup_upscale = time.perf_counter() - t
    plan = tiling.make_plan(h, w, 1, tiling.pixel_budget(upscaler.device, upscaler.bytes_per_pixel), None, None, None)
    tiles = "whole image" if plan.tiles == 1 else f"{plan.tiles} tiles of {plan.tile_w}x{plan.tile_h}"
    calls: dict[str, Callable[[], np.ndarray]] = {}
    for tile, label in ((0, "whole image"), (None, f"defaults: {tiles}")):
        name = f"upscale() {upscaler.backend}, {label}, PIL in/out"
        if tile is None and plan.tiles == 1:
            continue  # the defaults already run the whole image
        setup[name] = setup_upscale
        calls[name] = lambda tile=tile: np.asarray(upscaler.upscale(image, tile=tile)).transpose(2, 0, 1)[None]

    conv_nchw, conv_macs = dense_conv(h, w, channels_last=False)
    conv_cl, _ = dense_conv(h, w, channels_last=True)
    others = {"dense 64-ch 3x3 conv (NCHW)": conv_nchw, "dense 64-ch 3x3 conv (channels-last)": conv_cl}

    first: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    peaks: dict[str, int | None] = {}
    for name, worker in workers.items():
        t = time.perf_counter()
        outputs[name] = worker.ask("output")
        first[name] = time.perf_counter() - t
        peaks[name] = worker.ask("peak")
    with torch.inference_mode():
        for name, fn in nets.items():
            t = time.perf_counter()
            outputs[name] = to_8bit(fn())
            first[name] = time.perf_counter() - t
        for name, fn in calls.items():
            t = time.perf_counter()
            outputs[name] = fn()
            first[name] = time.perf_counter() - t
        peaks.update({name: peak_bytes(fn) for name, fn in {**nets, **calls}.items()})
        load_before = load_avg()
        times = interleaved({**workers, **nets, **calls, **others}, args.repeats)
        load_after = load_avg()
    for worker in workers.values():
        worker.close()

    med = {n: statistics.median(v) for n, v in times.items()}
    base = AUTHORS if AUTHORS in med else TRAINING
    lines = [
        f"### x{scale}: {width}x{height} output ({w}x{h} input), {macs / 1e9:.1f} GMAC per call",
        "",
        f"{args.repeats} interleaved rounds; load average (1/5/15 min) {load_before} before, {load_after} after.",
        "",
        f"| contender | median s | vs {AUTHORS if base == AUTHORS else TRAINING} | vs {TRAINING} | GMAC/s "
        f"| peak MiB | setup s | first call s | 8-bit vs {base} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in [*workers, *nets, *calls]:
        diff = np.abs(outputs[name].astype(np.int16) - outputs[base].astype(np.int16))
        agreement = "identical" if not diff.any() else f"max {diff.max()} levels, {100 * (diff > 0).mean():.3f} % px"
        peak = "n/a" if peaks[name] is None else f"{peaks[name] / 2**20:.0f}"
        lines.append(
            f"| {name} | {med[name]:.3f} | {med[base] / med[name]:.2f}x | {med[TRAINING] / med[name]:.2f}x "
            f"| {macs / med[name] / 1e9:.1f} | {peak} | {setup.get(name, 0):.1f} | {first[name]:.2f} | {agreement} |"
        )
    for name in others:
        lines.append(f"| {name} | {med[name]:.4f} | | | {conv_macs / med[name] / 1e9:.1f} | | | | |")
    return [*lines, ""]


def bench_gpu(args: argparse.Namespace) -> list[str]:
    """fp32 and fp16 throughput (output megapixels per second) at 720p and 4K outputs, x2 and x4."""
    if not torch.cuda.is_available():
        return ["### GPU", "", "Not measured: no CUDA device on this machine.", ""]
    lines = [
        f"### GPU: {torch.cuda.get_device_name()}",
        "",
        "| scale | output | dtype | median s | output MP/s |",
        "|---|---|---|---:|---:|",
    ]
    for scale in (2, 4):
        for width, height in ((1280, 720), (3840, 2160)):
            x = torch.rand(1, 3, height // scale, width // scale, device="cuda")
            for dtype in (torch.float32, torch.float16):
                upscaler = Upscaler(load_network(args.checkpoints / f"FDIWNx{scale}.pt", scale), "cuda", dtype=dtype)
                upscaler.forward(x)
                times = []
                for _ in range(args.repeats):
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    upscaler.forward(x)
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t)
                med = statistics.median(times)
                lines.append(
                    f"| x{scale} | {width}x{height} | {str(dtype).removeprefix('torch.')} | {med:.4f} "
                    f"| {width * height / med / 1e6:.1f} |"
                )
    return [*lines, ""]


def write_results(path: Path, block: list[str]) -> None:
    """Replace the text between the markers in ``path`` (the prose around them is kept)."""
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = f"{text.rstrip()}\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(head + BEGIN + "\n" + "\n".join(block) + "\n" + END + tail)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--authors-code", type=Path, help="folder holding the authors' 'model' package")
    p.add_argument("--checkpoints", type=Path, default=reference_dir() / "upstream-checkpoints")
    p.add_argument("--scales", type=int, nargs="+", default=[4, 2, 3], choices=(2, 3, 4))
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians over them)")
    p.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("WIDTH", "HEIGHT"), help="output size")
    p.add_argument("--threads", type=int, help="torch (and onnxruntime) threads (default: torch's own choice)")
    p.add_argument("--backends", nargs="+", help="default: every backend usable here")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.backends = args.backends or [b for b in available("cpu") if b != "torch"] + ["torch"]
    if args.authors_code and not (args.authors_code / "model").is_dir():
        p.error(f"{args.authors_code} holds no 'model' package (expected FDIWN_TrainCode/code)")
    started = time.strftime("%Y-%m-%d %H:%M")
    env = "".join(f"{k}={os.environ[k]} " for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS") if k in os.environ)
    block = [
        f"Measured {started} with `{env}python benchmarks/speed.py {' '.join(sys.argv[1:])}`.",
        "",
        *[f"- {line}" for line in machine()],
        "",
    ]
    print("\n".join(block), flush=True)
    for part in [*(lambda s=s: bench_scale(args, s) for s in args.scales), lambda: bench_gpu(args)]:
        lines = part()
        print("\n".join(lines), flush=True)
        block += lines
    if not args.no_write:
        write_results(args.output, block)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

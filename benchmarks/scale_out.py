"""Images per second with 1 and 2 workers: Ray actors (fdiwn_sr.ray.upscale_dataset) and torchrun processes.

    python benchmarks/scale_out.py --weights FDIWNx4.pt [--size 64] [--images 12] [--rounds 2]

Each engine upscales a folder of ``--images`` RGB images (``--size`` px
square, x4, written as PNG with --overwrite). The steady rate is taken from
the outputs' modification times: (images - 1) / (last write - first write),
so process start-up, Ray actors and model loading stay out of it; the whole
job's wall time is reported beside it. Configurations run interleaved,
``--rounds`` times; medians are reported. Threads per worker are the cores
split evenly: 1 worker x all cores, 2 workers x half. Prints a Markdown table
for docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(root: Path, count: int, size: int) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    for k in range(count):  # smooth content (a noise image upscaled bicubically), like a photo's scale
        im = Image.fromarray(np.roll(base, k, axis=1)).resize((size, size), Image.BICUBIC)
        im.save(root / f"img_{k:03d}.png")
    return root


def torchrun_seconds(folder: Path, out: Path, weights: str, workers: int) -> float:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(workers)]
    command += ["-m", "fdiwn_sr", "upscale", str(folder), "-o", str(out), "--device", "cpu", "--overwrite"]
    command += ["--weights", weights]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def ray_seconds(folder: Path, out: Path, weights: str, workers: int, cores: int) -> float:
    from fdiwn_sr.ray import upscale_dataset

    start = time.perf_counter()
    result = upscale_dataset(
        folder, out, 4, weights=weights, device="cpu", concurrency=workers, threads=cores // workers, overwrite=True
    )
    assert not result.errors, result.errors
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="safetensors or authors' .pt (x4)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--engines", default="ray,torchrun")
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    engines = args.engines.split(",")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "in", args.images, args.size)
        if "ray" in engines:
            import ray

            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        configs = [(engine, workers) for engine in engines for workers in (1, 2)]
        rates: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
        walls: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
        for _ in range(args.rounds):
            for engine, workers in configs:
                out = Path(tmp) / f"out_{engine}_{workers}"
                if engine == "ray":
                    wall = ray_seconds(folder, out, args.weights, workers, cores)
                else:
                    wall = torchrun_seconds(folder, out, args.weights, workers)
                stamps = sorted(p.stat().st_mtime for p in out.glob("*.png"))
                assert len(stamps) == args.images, f"{engine}: {len(stamps)} outputs"
                rates[(engine, workers)].append((len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9))
                walls[(engine, workers)].append(wall)
                print(engine, workers, f"{wall:.1f}s", f"{rates[(engine, workers)][-1]:.2f} img/s", flush=True)
        if "ray" in engines:
            ray.shutdown()
    load_after = os.getloadavg()
    print()
    print(
        f"Measured by `benchmarks/scale_out.py --size {args.size} --images {args.images} --rounds {args.rounds}` on "
        f"{platform.machine()} {platform.system()}, {cores} CPUs, x4, {args.images} {args.size}x{args.size} RGB PNGs; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after."
    )
    print()
    print("| engine | workers x threads | steady images/s (median) | all rounds | vs 1 worker | job wall (median) |")
    print("|---|---|---|---|---|---|")
    for engine, workers in configs:
        median = statistics.median(rates[(engine, workers)])
        base = statistics.median(rates[(engine, 1)])
        rounds = ", ".join(f"{r:.2f}" for r in rates[(engine, workers)])
        label = "Ray actors" if engine == "ray" else "torchrun processes"
        wall = statistics.median(walls[(engine, workers)])
        ratio = median / base
        print(f"| {label} | {workers} x {cores // workers} | {median:.2f} | {rounds} | {ratio:.2f}x | {wall:.1f} s |")


if __name__ == "__main__":
    main()

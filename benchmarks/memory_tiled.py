"""Peak memory of upscaling a large image with default settings: a 4000x3000 output at x2 on the CPU.

Each measurement runs in a fresh process so that its peak resident set size
(``ru_maxrss``) belongs to that call alone: Python, torch and the model, the
2000x1500 input picture (the bundled sample, bicubic-enlarged), the automatic
tiles and the output image. The target is a peak under 2 GB.

    python benchmarks/memory_tiled.py [--weights FDIWNx2.pt] [--no-write]

writes the results between the markers in docs/usage.md ("Memory").
Weights: ``--weights``, default the authors' FDIWNx2.pt in the reference folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "usage.md"
BEGIN, END = "<!-- memory_tiled.py results: begin -->", "<!-- memory_tiled.py results: end -->"
LIMIT = 2 * 10**9  # bytes


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def child(weights: str, width: int, height: int) -> dict:
    """One measurement, in this (fresh) process."""
    import torch
    from PIL import Image

    from fdiwn_sr import load_model, tiling

    upscaler = load_model(2, weights=weights)
    with Image.open(ROOT / "examples" / "data" / "sample.png") as im:
        picture = im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    before = peak_rss()
    budget = tiling.pixel_budget(upscaler.device, upscaler.bytes_per_pixel)
    plan = tiling.make_plan(height, width, 1, budget, None, None, None)
    start = time.perf_counter()
    out = upscaler.upscale(picture)
    seconds = time.perf_counter() - start
    return {
        "output": f"{out.width}x{out.height}",
        "device": str(upscaler.device),
        "backend": upscaler.backend,
        "threads": torch.get_num_threads(),
        "tiles": f"{plan.tiles} of {plan.tile_w}x{plan.tile_h}",
        "seconds": round(seconds, 1),
        "rss_before": before,
        "peak_rss": peak_rss(),
    }


def measure(weights: str, width: int, height: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--weights", weights, "--size", f"{width}x{height}"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def report(r: dict) -> str:
    mb = 10**6
    verdict = "under" if r["peak_rss"] < LIMIT else "OVER"
    return "\n".join(
        [
            f"Measured by `benchmarks/memory_tiled.py` on {platform.machine()} Linux, {os.cpu_count()} CPUs, "
            f"{r['threads']} torch threads, backend `{r['backend']}`, default settings (`tile=None`).",
            "",
            "| output | tiles (automatic) | peak RSS | before the call (Python, torch, model, input) | time |",
            "|---|---|---|---|---|",
            f"| {r['output']} x2 on {r['device']} | {r['tiles']} | **{r['peak_rss'] / mb:,.0f} MB** | "
            f"{r['rss_before'] / mb:,.0f} MB | {r['seconds']:.0f} s |",
            "",
            f"Peak is {verdict} the 2 GB target.",
        ]
    )


def write(doc: Path, text: str) -> None:
    content = doc.read_text()
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    default = Path(os.environ.get("FDIWN_SR_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(default / "upstream-checkpoints" / "FDIWNx2.pt"))
    p.add_argument("--size", default="2000x1500", help="low-resolution input, WxH")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/usage.md alone")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.child:
        print(json.dumps(child(args.weights, width, height)))
        return
    text = report(measure(args.weights, width, height))
    print(text)
    if not args.no_write:
        write(DOC, text)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()

"""Video throughput on the CPU: 320x180 -> 1280x720 (x4), frames per second, with and without the video plumbing.

Interleaved rounds, each timing (a) the network alone on the decoded frames,
in the same batches, and (b) ``upscale_video`` on the whole file (decode,
upscale, H.264 encode at the default crf, audio copy). The median of each and
their ratio say what decoding, colour conversion and encoding cost on top of
the network; the threads overlap them with it.

    python benchmarks/video_speed.py [--weights FDIWNx4.pt] [--frames 24] [--rounds 3] [--no-write]

writes the results between the markers in docs/video.md. Weights: default the
authors' FDIWNx4.pt in the reference folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
DOC = ROOT / "docs" / "video.md"
BEGIN, END = "<!-- video_speed.py results: begin -->", "<!-- video_speed.py results: end -->"


def main() -> None:
    from video_samples import decode, make_clip

    import fdiwn_sr

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ref = Path(os.environ.get("FDIWN_SR_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))
    p.add_argument("--weights", default=str(ref / "upstream-checkpoints" / "FDIWNx4.pt"))
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()

    load = "/".join(f"{v:.2f}" for v in os.getloadavg())
    up = fdiwn_sr.load_model(4, weights=args.weights, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", frames=args.frames, fps=24, size=(320, 180))
        frames = decode(clip)[0]
        up.upscale(frames[:1])  # warm-up: first-call costs out of the timings
        network, video = [], []
        for r in range(args.rounds):
            t = time.perf_counter()
            for k in range(0, len(frames), args.batch_size):
                up.upscale(frames[k : k + args.batch_size])
            network.append(len(frames) / (time.perf_counter() - t))
            t = time.perf_counter()
            fdiwn_sr.upscale_video(
                clip, Path(tmp) / f"out{r}.mp4", upscaler=up, batch_size=args.batch_size, progress=False
            )
            video.append(len(frames) / (time.perf_counter() - t))
            print(f"round {r}: network {network[-1]:.3f} frames/s, upscale_video {video[-1]:.3f} frames/s", flush=True)
    n, v = statistics.median(network), statistics.median(video)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/video_speed.py --frames {args.frames} --rounds "
        f"{args.rounds}` on {platform.machine()} Linux, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), backend {up.backend}, "
        "malloc as a library user has it (not tuned; the runner's heap reserve); "
        f"load average (1/5/15 min) {load} before the run.",
        "",
        f"{args.frames} frames of 320x180 -> 1280x720, x4, batch {args.batch_size}, "
        f"median of {args.rounds} interleaved rounds:",
        "",
        "| | frames/s |",
        "|---|---|",
        f"| network alone (decoded frames in, arrays out) | {n:.3f} |",
        f"| `upscale_video` (decode, upscale, H.264 crf {fdiwn_sr.video.DEFAULT_CRF}, mux) | {v:.3f} |",
        f"| ratio | {v / n:.2f} |",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        doc = DOC.read_text()
        start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


if __name__ == "__main__":
    main()

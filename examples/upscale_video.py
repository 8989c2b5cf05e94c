"""Upscale a video: frames through FDIWN, sound and subtitles copied, timing, rotation and colour tags kept.

    python examples/upscale_video.py clip.mp4 -o clip_x4.mp4 [--scale 4] [--weights FDIWNx4.pt] [--lossless]

Needs the video extra (pip install 'fdiwn-sr[video]'). Without --weights the
pretrained weights are fetched once into the cache. The same from the shell:
``fdiwn-sr upscale clip.mp4 -o clip_x4.mp4`` (folders mixing images and videos work too).
"""

from __future__ import annotations

import argparse
import time

import fdiwn_sr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--weights", help="safetensors or the authors' .pt (default: pretrained)")
    p.add_argument("--lossless", action="store_true", help="FFV1 (use an .mkv output): every pixel as computed")
    args = p.parse_args()

    # A model you keep can serve many videos; upscale_video can also load one itself (scale=, weights=).
    upscaler = fdiwn_sr.load_model(args.scale, weights=args.weights)
    start = time.perf_counter()
    result = fdiwn_sr.upscale_video(
        args.input,
        args.output,
        upscaler=upscaler,
        codec="ffv1" if args.lossless else None,  # default: H.264 (libx264) at crf 14
        overwrite=True,
    )
    seconds = time.perf_counter() - start
    print(
        f"{result.path}: {result.frames} frames, {result.width}x{result.height} {result.codec} ({result.pix_fmt}), "
        f"{result.frames / seconds:.1f} frames/s"
    )


if __name__ == "__main__":
    main()

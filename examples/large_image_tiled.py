"""Upscale a large image tile by tile with bounded memory, and check that the tiles do not show.

    python examples/large_image_tiled.py [--weights FDIWNx2.pt] [--size 1600] [--tile 256] [--compare]

Builds a large picture from the bundled sample (bicubic to --size pixels wide),
upscales it x2 in --tile x --tile low-resolution tiles (default: sized from
free memory) with a progress bar, and writes it. --compare also runs the whole
image at once and prints how close the tiled result is (PSNR; needs the memory
of a whole-image pass, so keep --size small with it).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from PIL import Image

import fdiwn_sr
from fdiwn_sr import tiling

SAMPLE = Path(__file__).resolve().parent / "data" / "sample.png"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="safetensors or the authors' FDIWNx2.pt (default: pretrained)")
    p.add_argument("--size", type=int, default=1600, help="width of the low-resolution picture")
    p.add_argument("--tile", type=int, help="tile size (default: automatic)")
    p.add_argument("--output", default="large_x2.png")
    p.add_argument("--compare", action="store_true", help="also run the whole image and compare")
    args = p.parse_args()

    with Image.open(SAMPLE) as im:
        picture = im.convert("RGB").resize((args.size, args.size * 3 // 4), Image.Resampling.BICUBIC)
    upscaler = fdiwn_sr.load_model(2, weights=args.weights)
    w, h = picture.size
    budget = tiling.pixel_budget(upscaler.device, upscaler.bytes_per_pixel)
    plan = tiling.make_plan(h, w, 1, budget, args.tile, None, None)
    print(f"{w} x {h} on {upscaler.device}: {plan.tiles} tile(s) of {plan.tile_w} x {plan.tile_h}")

    start = time.perf_counter()
    tiled = upscaler.upscale(picture, tile=args.tile, progress=True)
    print(f"upscaled to {tiled.width} x {tiled.height} in {time.perf_counter() - start:.1f} s")
    tiled.save(args.output)
    print(f"wrote {args.output}")

    if args.compare:
        x = np.asarray(picture, dtype=np.float32) / 255
        a, b = upscaler.upscale(x, tile=args.tile), upscaler.upscale(x, tile=0)
        mse = float(((a.astype(np.float64) - b) ** 2).mean())
        print(f"tiled vs whole image: PSNR {10 * math.log10(1 / mse) if mse else math.inf:.2f} dB")


if __name__ == "__main__":
    main()

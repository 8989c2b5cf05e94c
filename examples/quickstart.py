"""Upscale the bundled sample picture x4: the one-line call, a model you keep, other input kinds.

    python examples/quickstart.py [--weights FDIWNx4.pt] [--output sample_x4.png]

Without --weights the pretrained weights are fetched once into the cache.
The same from the shell: ``fdiwn-sr upscale examples/data/sample.png -o out/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import fdiwn_sr

SAMPLE = Path(__file__).resolve().parent / "data" / "sample.png"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="safetensors or the authors' FDIWNx4.pt (default: pretrained)")
    p.add_argument("--output", default="sample_x4.png")
    args = p.parse_args()

    # 1. One call. The model is loaded on first use and kept for later calls.
    image = Image.open(SAMPLE)
    result = fdiwn_sr.upscale(image, scale=4, weights=args.weights)
    result.save(args.output)
    print(f"{SAMPLE.name} {image.size} -> {args.output} {result.size}")

    # 2. A model you hold; every input comes back in its own kind, dtype and mode.
    upscaler = fdiwn_sr.load_model(4, weights=args.weights)
    print(f"using {upscaler}")
    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").rotate(90).resize(image.size))
    sixteen_bit = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    for x in (gray, sixteen_bit, rgba):
        y = upscaler.upscale(x)
        kind = f"{y.dtype} array {y.shape}" if isinstance(y, np.ndarray) else f"PIL {y.mode} {y.size}"
        print(f"  {type(x).__name__} -> {kind}")


if __name__ == "__main__":
    main()

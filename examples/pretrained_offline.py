"""Pretrained weights on a machine without network: fill the cache once, copy it, work offline.

On a connected machine this downloads the pretrained weights into the cache
(FDIWN_SR_HOME, default the user cache folder; the same as ``fdiwn-sr download``),
copies that cache folder to ``--airgap-dir`` as you would onto the offline
machine, then, with downloads switched off, loads the model from the copy and
upscales an image::

    python examples/pretrained_offline.py --scale 4 --input photo.png --output photo_x4.png

On the offline machine itself only the last two steps run: point FDIWN_SR_HOME
(or ``cache_dir=``) at the copied folder and set FDIWN_SR_OFFLINE=1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from fdiwn_sr import load_model
from fdiwn_sr.weights import default_cache_home, download


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--input", help="image to upscale (default: a small generated test pattern)")
    p.add_argument("--output", default="upscaled.png")
    p.add_argument("--airgap-dir", help="where to copy the cache (default: a new temporary folder)")
    args = p.parse_args()

    # 1. Connected machine: fetch and verify the weights (Hub, else the authors' upstream copy).
    path = download([args.scale])[args.scale]
    print(f"cached {path}")

    # 2. Carry the cache folder over (here: copy it to another folder).
    airgap = Path(args.airgap_dir or tempfile.mkdtemp(prefix="fdiwn-sr-airgap-"))
    shutil.copytree(default_cache_home(), airgap, dirs_exist_ok=True)
    print(f"copied the cache to {airgap}")

    # 3. Offline machine: no download may happen from here on.
    os.environ["FDIWN_SR_OFFLINE"] = "1"
    upscaler = load_model(args.scale, cache_dir=airgap)
    image = Image.open(args.input) if args.input else Image.linear_gradient("L").resize((48, 48)).convert("RGB")
    upscaler.upscale(image).save(args.output)
    print(f"wrote {args.output} ({image.width}x{image.height} -> x{args.scale}) using {upscaler}")


if __name__ == "__main__":
    main()

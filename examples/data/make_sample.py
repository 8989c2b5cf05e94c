"""Make examples/data/sample.png: the "coffee" photo (CC0) shrunk x4 with our MATLAB-exact bicubic.

The photo is Rachel Michetti's, courtesy of Pikolo Espresso Bar, released CC0
by the photographer and shipped as ``skimage/data/coffee.png`` in
scikit-image (see SAMPLE_LICENSE.md beside this script). A 512 x 384 crop is
shrunk to 128 x 96 with :func:`fdiwn_sr.training.imresize` at 1/4, the
degradation FDIWN's x4 model was trained on, so ``fdiwn-sr upscale
examples/data/sample.png`` shows what the network is for. Run from the
repository root with the photo taken from a scikit-image wheel (scikit-image is
not a dependency of ours)::

    pip download --no-deps scikit-image && unzip -j scikit_image-*.whl skimage/data/coffee.png
    python examples/data/make_sample.py coffee.png
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from fdiwn_sr.training import imresize

SOURCE_SHA256 = "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"  # scikit-image's registry
CROP = (44, 8, 556, 392)  # left, top, right, bottom of 600 x 400: the cup, saucer and spoon, 512 x 384


def make(source: Path) -> Image.Image:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise ValueError(f"{source} is not scikit-image's coffee.png (sha256 {digest})")
    with Image.open(source) as im:
        hr = np.asarray(im.convert("RGB").crop(CROP))
    return Image.fromarray(imresize(hr, 1 / 4))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="skimage/data/coffee.png from a scikit-image wheel")
    out = Path(__file__).with_name("sample.png")
    make(p.parse_args().source).save(out, optimize=True)
    print(f"wrote {out}")

"""Make examples/data/sample.png: a small synthetic scene (gradients, shapes, stripes, text).

We drew it ourselves, so it may be redistributed with the package (MIT, like
the code). The text uses Pillow's built-in font (Aileron, CC0). Run from the
repository root::

    python examples/data/make_sample.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

W, H = 128, 96


def make() -> Image.Image:
    y = np.mgrid[0:H, 0:W][0].astype(np.float32)
    sky = np.stack([90 + 80 * y / H, 150 + 60 * y / H, 235 - 30 * y / H], axis=-1)
    im = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((92, 8, 116, 32), fill=(255, 214, 90), outline=(240, 160, 40))
    d.polygon([(0, 62), (30, 30), (52, 52), (78, 24), (128, 64), (128, 96), (0, 96)], fill=(86, 110, 128))
    d.polygon([(70, 31), (78, 24), (86, 32), (80, 30)], fill=(245, 245, 250))  # snow cap
    rng = np.random.default_rng(2022)
    grass = np.asarray(im).copy()
    band = grass[70:]
    band[:] = (60, 130, 60)
    band += rng.integers(0, 40, band.shape, dtype=np.uint8)
    im = Image.fromarray(grass)
    d = ImageDraw.Draw(im)
    d.rectangle((14, 52, 46, 80), fill=(200, 70, 60), outline=(60, 30, 30))
    d.polygon([(10, 53), (30, 38), (50, 53)], fill=(90, 50, 40))
    for wx in (18, 34):
        d.rectangle((wx, 58, wx + 8, 66), fill=(250, 240, 180), outline=(40, 40, 40))
        d.line((wx + 4, 58, wx + 4, 66), fill=(40, 40, 40))
    for i in range(6):  # fence: fine stripes that show aliasing
        d.line((60 + 6 * i, 74, 60 + 6 * i, 90), fill=(235, 225, 200), width=2)
    d.line((58, 78, 94, 78), fill=(235, 225, 200), width=1)
    d.line((58, 86, 94, 86), fill=(235, 225, 200), width=1)
    font = ImageFont.load_default(size=13)
    d.text((64, 50), "FDIWN", font=font, fill=(255, 255, 255), stroke_width=1, stroke_fill=(20, 20, 20))
    return im


if __name__ == "__main__":
    out = Path(__file__).with_name("sample.png")
    make().save(out, optimize=True)
    print(f"wrote {out}")

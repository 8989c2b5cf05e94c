"""Small images of every kind and PIL mode, shared by the image and upscaler tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

RNG = np.random.default_rng(5)
RGB8 = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)
RGBA8 = np.concatenate([RGB8, RNG.integers(0, 256, (9, 13, 1), dtype=np.uint8)], axis=2)
GRAY16 = RNG.integers(0, 65536, (9, 13), dtype=np.uint16)


def pil_inputs() -> dict[str, Image.Image]:
    rgb = Image.fromarray(RGB8)
    p_index = rgb.quantize(12)
    p_index.info["transparency"] = 3
    p_rgba_palette = Image.fromarray(RGBA8).quantize(6)  # quantising RGBA gives an RGBA palette
    buf = io.BytesIO()
    rgb.quantize(5).save(buf, "PNG", transparency=bytes([255, 0, 128, 255, 255]))  # tRNS: alpha per entry
    p_trns = Image.open(buf)
    return {
        "RGB": rgb,
        "RGBA": Image.fromarray(RGBA8),
        "L": rgb.convert("L"),
        "LA": Image.fromarray(RGBA8[..., [0, 3]]),
        "P": rgb.quantize(16),
        "P+index transparency": p_index,
        "P+tRNS": p_trns,
        "P+RGBA palette": p_rgba_palette,
        "1": rgb.convert("L").point(lambda v: 255 * (v > 127)).convert("1", dither=Image.Dither.NONE),
        "I;16": Image.fromarray(GRAY16),
        "I;16B": Image.frombytes("I;16B", (13, 9), GRAY16.astype(">u2").tobytes()),
        "I": Image.fromarray(GRAY16.astype(np.int32)),
        "F": Image.fromarray(GRAY16.astype(np.float32) / 257),
        "CMYK": rgb.convert("CMYK"),
        "YCbCr": rgb.convert("YCbCr"),
    }

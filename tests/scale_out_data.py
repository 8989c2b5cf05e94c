"""A small folder of mixed images for the scale-out tests (Ray, torchrun), and what to compare outputs with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "data" / "sample.png"
CORRUPT = "corrupt.png"


def make_folder(root: Path) -> Path:
    """13 good images (RGB, RGBA, L, LA, P, 16-bit gray; 16-40 px; some the same size) and one corrupt file."""
    root.mkdir(parents=True)
    (root / "sub").mkdir()
    with Image.open(SAMPLE) as im:
        sample = im.convert("RGB")

    def crop(x: int, y: int, w: int, h: int) -> Image.Image:
        return sample.crop((x, y, x + w, y + h))

    crop(0, 0, 24, 16).save(root / "rgb_a.png")
    crop(30, 10, 24, 16).save(root / "rgb_b.png")  # same size as rgb_a: batched together by Ray
    crop(60, 40, 40, 32).save(root / "rgb_c.png")
    crop(5, 50, 20, 28).save(root / "sub" / "rgb_d.jpg", quality=95)
    rgba = crop(10, 10, 32, 24).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((32, 24)))
    rgba.save(root / "rgba_a.png")
    rgba2 = crop(50, 5, 16, 16).convert("RGBA")
    rgba2.putalpha(128)
    rgba2.save(root / "sub" / "rgba_b.png")
    crop(70, 70, 28, 20).convert("L").save(root / "gray_a.png")
    crop(20, 90, 16, 24).convert("L").save(root / "gray_b.jpg", quality=95)
    crop(0, 30, 20, 20).convert("LA").save(root / "gray_alpha.png")
    crop(40, 60, 24, 24).quantize(16).save(root / "palette.png")
    ramp = np.linspace(0, 65535, 36 * 20).reshape(20, 36).astype(np.uint16)
    Image.fromarray(ramp).save(root / "deep_a.png")  # 16-bit gray
    noise = np.random.default_rng(14).integers(0, 65536, (24, 18), dtype=np.uint16)
    Image.fromarray(noise).save(root / "sub" / "deep_b.png")
    crop(90, 20, 24, 16).save(root / "rgb_e.png")  # a third 24 x 16
    (root / CORRUPT).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, then nothing readable
    return root


def output_name(rel: str, scale: int) -> str:
    """The CLI's output name for an input at ``rel`` (png/jpg kept)."""
    p = Path(rel)
    return str(p.with_name(f"{p.stem}_x{scale}{p.suffix}"))


def good_images(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != CORRUPT)


def pixels(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

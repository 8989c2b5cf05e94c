"""Every image a folder may hold comes out right or is refused with a reason (issue 12).

Palette images with all 256 entries, animations, float and 32-bit integer
TIFFs, 48-bit PNGs, images over the pixel limit; and a fuzz-style sweep of
kinds x modes x sizes x dtypes x tile options through the real network.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fdiwn_sr import images, load_model, tiling

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "data" / "sample.png"


def photo(w: int, h: int, left: int = 100, top: int = 80) -> Image.Image:
    with Image.open(SAMPLE) as im:
        return im.convert("RGB").crop((left, top, left + w, top + h))


def png_48bit(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


@pytest.fixture(scope="module")
def up(authors_pt):
    return load_model(2, weights=authors_pt(2), device="cpu")


def test_full_256_colour_palette_round_trips(up, tmp_path):
    rgb = photo(24, 20)
    p = rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    p.putpalette(np.resize(np.asarray(p.getpalette(), np.uint8), 768).tobytes())  # all 256 entries present
    assert len(p.getpalette()) == 768
    p.save(tmp_path / "p.gif")
    for source in (p, tmp_path / "p.gif"):
        out = up.upscale(source)
        assert out.mode == "P" and out.size == (48, 40)
        assert out.getpalette() == Image.open(tmp_path / "p.gif").getpalette() or source is p
        got = np.asarray(out.convert("RGB"), np.float64).mean()
        assert abs(got - np.asarray(rgb, np.float64).mean()) < 6  # the picture, not a blank or a scramble


def test_animations_and_multi_page_files_are_refused(tmp_path):
    frames = [photo(16, 12, left=10 * k) for k in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=80)
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], duration=80)
    for name in ("anim.gif", "pages.tif", "anim.webp"):
        with pytest.raises(ValueError, match=r"\(3 frames\); fdiwn-sr upscales still images only"):
            images.open_image(tmp_path / name)
    frames[0].save(tmp_path / "still.gif")
    assert images.open_image(tmp_path / "still.gif").size == (16, 12)


@pytest.mark.parametrize("full_scale", [1.0, 255.0])
def test_float_tiffs_keep_their_range(up, tmp_path, full_scale):
    gray = np.asarray(photo(20, 16).convert("L"), np.float32) / 255 * full_scale
    Image.fromarray(gray).save(tmp_path / "f.tif")
    im = images.open_image(tmp_path / "f.tif")
    assert im.mode == "F"
    x, spec = images.to_tensor(im)
    assert spec.scale == full_scale and torch.allclose(x[0, 0], torch.from_numpy(gray / full_scale))
    out = np.asarray(up.upscale(im))
    assert out.shape == (32, 40) and out.dtype == np.float32
    assert abs(out.mean() - gray.mean()) < 0.03 * full_scale and out.max() <= full_scale
    Image.fromarray(np.full((4, 4), 300.0, np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(ValueError, match=r"PIL mode F values must lie in \[0, 255\], found 300"):
        images.to_tensor(tmp_path / "hdr.tif")


def test_int32_tiffs_are_read_as_16_bit_and_out_of_range_refused(tmp_path):
    ramp = np.tile(np.arange(0, 65536, 512, dtype=np.int32), (4, 1))
    Image.fromarray(ramp).save(tmp_path / "i.tif")
    x, spec = images.to_tensor(tmp_path / "i.tif")
    assert spec.mode == "I" and torch.allclose(x[0, 0], torch.from_numpy(ramp / 65535).float())
    Image.fromarray(ramp * 4).save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=r"PIL mode I values must lie in \[0, 65535\]"):
        images.to_tensor(tmp_path / "wide.tif")


def test_48_bit_png_says_it_is_read_as_8_bits(tmp_path):
    rgb16 = (np.asarray(photo(12, 10), np.uint16) * 257 + 3).astype(np.uint16)
    png_48bit(tmp_path / "deep.png", rgb16)
    with pytest.warns(images.PrecisionWarning, match=r"16-bit-per-channel RGB is read by Pillow as 8 bits"):
        im = images.open_image(tmp_path / "deep.png")
    assert im.mode == "RGB" and np.array_equal(np.asarray(im), (rgb16 >> 8).astype(np.uint8))
    x, _ = images.to_tensor(rgb16)  # the way to keep 16 bits: a uint16 array
    assert torch.allclose(x[0].permute(1, 2, 0), torch.from_numpy(rgb16 / 65535).float())
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "gray16.png")  # 16-bit gray is read in full
    with Image.open(tmp_path / "gray16.png") as g:
        assert g.mode.startswith("I")


def test_pixel_limit_is_configurable_and_says_how_to_raise_it(tmp_path, monkeypatch):
    Image.new("L", (40, 30)).save(tmp_path / "small.png")
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "1000")
    with pytest.raises(ValueError, match=r"40 x 30 = 0.0 megapixels, over the limit of 0.001; .*FDIWN_SR_MAX_PIXELS=N"):
        images.open_image(tmp_path / "small.png")
    assert images.open_image(tmp_path / "small.png", max_pixels=1200).size == (40, 30)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match="is not a number of pixels"):
        images.open_image(tmp_path / "small.png")
    monkeypatch.delenv(images.MAX_PIXELS_ENV)
    assert images.max_pixels() < Image.MAX_IMAGE_PIXELS  # the default speaks before Pillow's bomb check
    Image.new("1", (10_000, 5_500)).save(tmp_path / "big.png")  # 55 MP; refused from its header, not decoded
    with pytest.raises(ValueError, match=r"10000 x 5500 = 55.0 megapixels, over the limit of 50"):
        images.open_image(tmp_path / "big.png")


def test_overlap_beyond_the_automatic_tile_is_an_error_not_a_black_image(up, monkeypatch):
    monkeypatch.setattr(tiling, "host_memory_available", lambda: 8 * 2**20)  # automatic tiles of 24 pixels
    x = np.asarray(photo(40, 33))
    plan = tiling.make_plan(33, 40, 1, tiling.pixel_budget(torch.device("cpu"), up.bytes_per_pixel), None, None, None)
    assert (plan.tile_h, plan.tile_w) == (24, 24)
    for overlap in (13, 24, 30):  # over half the tile; at the tile (was black); over it (was ZeroDivisionError)
        with pytest.raises(ValueError, match=rf"tile_overlap={overlap} is more than half a tile \(24 pixels\)"):
            up.upscale(x, tile_overlap=overlap)
    out = up.upscale(x, tile_overlap=12)
    assert abs(out.astype(np.float64).mean() - x.astype(np.float64).mean()) < 4


def test_a_20000_square_at_x2_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(tiling, "host_memory_available", lambda: 24 * 2**30)
    huge = torch.zeros(1, 3, 1, 1).expand(1, 3, 20_000, 20_000)  # no memory behind it

    def never(t):
        raise AssertionError("the network must not run")

    with pytest.raises(ValueError, match=r"needs about 58.1 GiB .* more than the 24.0 GiB available on cpu"):
        tiling.upscale_tiled(never, huge, 2, torch.device("cpu"))
    tiling.check_memory(torch.zeros(1, 3, 1, 1).expand(1, 3, 4000, 3000), 2)  # 12 MP fits in 24 GiB


# --- fuzz-style sweep: kinds x modes x sizes x dtypes x tile options, through the real x2 network ---

KINDS = {  # name -> (make from an RGB uint8 array, full-scale value of the result's pixels)
    "pil RGB": (lambda a: Image.fromarray(a), 255),
    "pil RGBA": (lambda a: Image.fromarray(np.dstack([a, np.full(a.shape[:2], 200, np.uint8)])), 255),
    "pil L": (lambda a: Image.fromarray(a).convert("L"), 255),
    "pil LA": (lambda a: Image.fromarray(a).convert("LA"), 255),
    "pil P256": (lambda a: Image.fromarray(a).quantize(256, dither=Image.Dither.NONE), 255),
    "pil I;16": (lambda a: Image.fromarray(a[..., 1].astype(np.uint16) * 257), 65535),
    "pil I": (lambda a: Image.fromarray(a[..., 1].astype(np.int32) * 257), 65535),
    "pil F 0..1": (lambda a: Image.fromarray(a[..., 1].astype(np.float32) / 255), 1),
    "pil CMYK": (lambda a: Image.fromarray(a).convert("CMYK"), 255),
    "numpy u8 HxW": (lambda a: a[..., 0].copy(), 255),
    "numpy u16 HxWx3": (lambda a: a.astype(np.uint16) * 257, 65535),
    "numpy f32 HxWx4": (lambda a: np.dstack([a, a[..., :1]]).astype(np.float32) / 255, 1),
    "numpy f16 HxWx3": (lambda a: (a / 255).astype(np.float16), 1),
    "torch f32 CxHxW": (lambda a: torch.from_numpy(a).permute(2, 0, 1).float() / 255, 1),
    "torch f64 BxCxHxW": (lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255, 1),
}
SIZES = [(5, 3), (40, 33)]  # (w, h)
TILES = [{}, {"tile": 0}, {"tile": 16, "tile_overlap": 8}, {"tile_overlap": 6}]


def as_float(obj) -> tuple[np.ndarray, tuple]:
    """Pixels as float64 HxWxC in the object's own units, and its (kind, mode/dtype, size) signature."""
    if isinstance(obj, Image.Image):
        pixels = obj.convert("RGBA" if "A" in obj.getbands() else "RGB") if obj.mode in ("P", "CMYK") else obj
        a = np.asarray(pixels, np.float64)
        return (a if a.ndim == 3 else a[..., None]), ("pil", obj.mode, obj.size)
    if isinstance(obj, np.ndarray):
        return (obj.astype(np.float64) if obj.ndim == 3 else obj[..., None].astype(np.float64)), (
            "numpy",
            obj.dtype,
            obj.shape[:2][::-1] + obj.shape[2:],
        )
    t = obj[0] if obj.ndim == 4 else obj
    return t.permute(1, 2, 0).double().numpy(), ("torch", obj.dtype, (t.shape[2], t.shape[1], obj.ndim))


@pytest.mark.parametrize("tile", TILES, ids=lambda t: ",".join(f"{k}={v}" for k, v in t.items()) or "automatic")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_every_kind_comes_back_right_and_not_blank(up, kind, size, tile, monkeypatch):
    monkeypatch.setattr(tiling, "host_memory_available", lambda: 8 * 2**20)  # automatic tiles of 24 pixels
    make, full = KINDS[kind]
    rgb = np.array(photo(*size, left=60 + size[0], top=90))
    image = make(rgb)
    out = up.upscale(image, **tile)
    a, (k, mode, dims) = as_float(image)
    b, (k2, mode2, dims2) = as_float(out)
    assert (k2, mode2) == (k, mode)
    assert dims2[:2] == (dims[0] * 2, dims[1] * 2) and dims2[2:] == dims[2:]
    bicubic = F.interpolate(torch.from_numpy(a).permute(2, 0, 1)[None], scale_factor=2, mode="bicubic")
    bicubic = bicubic[0].permute(1, 2, 0).numpy()
    assert b.shape == bicubic.shape
    assert abs(b.mean() - bicubic.mean()) < 0.04 * full, "the mean moved: a wrong or blank result"
    assert b.std() > 0.5 * bicubic.std(), "a flat result"

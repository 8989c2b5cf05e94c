"""Image plumbing without the network: every input kind and mode in and back out, metadata, files, bad input."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from image_samples import GRAY16, RGB8, RGBA8, pil_inputs
from PIL import Image, ImageCms

from fdiwn_sr import images

PIL_INPUTS = pil_inputs()


@pytest.mark.parametrize("name", list(PIL_INPUTS))
def test_pil_round_trip_is_exact(name):
    im = PIL_INPUTS[name]
    x, spec = images.to_tensor(im)
    assert x.dtype == torch.float32 and x.shape[0] == 1 and x.shape[2:] == (9, 13)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    out = images.from_tensor(x, spec)
    assert isinstance(out, Image.Image) and out.mode == im.mode and out.size == im.size
    if im.mode in ("CMYK", "YCbCr"):  # read through RGB: back to RGB it must be the same picture
        assert np.abs(np.asarray(out.convert("RGB"), int) - np.asarray(im.convert("RGB"), int)).max() <= 3
    else:
        assert np.array_equal(np.asarray(out), np.asarray(im))
    if im.mode == "P":
        assert np.array_equal(np.asarray(out.convert("RGBA")), np.asarray(im.convert("RGBA")))
        assert out.info.get("transparency") == im.info.get("transparency")


def test_channels_follow_the_mode():
    expected = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2, "P": 3, "P+index transparency": 4, "P+tRNS": 4, "1": 1}
    expected |= {"I;16": 1, "I": 1, "F": 1, "CMYK": 3, "P+RGBA palette": 4}
    for name, c in expected.items():
        assert images.to_tensor(PIL_INPUTS[name])[1].channels == c, name


def test_sixteen_bit_keeps_every_level():
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    for image in (ramp, Image.fromarray(ramp)):
        x, spec = images.to_tensor(image)
        out = np.asarray(images.from_tensor(x, spec))
        assert out.dtype == np.uint16 and np.array_equal(out, ramp)


@pytest.mark.parametrize(
    "array",
    [
        RGB8,
        RGB8[..., 0],
        RGB8[..., :1],
        RGBA8[..., [0, 3]],
        RGBA8,
        GRAY16,
        RGB8.astype(np.uint16) * 257,
        RGB8.astype(">u2") * 257,
        RGB8 / 255.0,
        (RGB8 / 255.0).astype(np.float32),
        (RGB8 / 255.0).astype(np.float16),
    ],
    ids=lambda a: f"{a.dtype.str}-{a.shape}",
)
def test_numpy_round_trip_keeps_dtype_and_layout(array):
    x, spec = images.to_tensor(array)
    out = images.from_tensor(x, spec)
    assert isinstance(out, np.ndarray) and out.dtype == array.dtype and out.shape == array.shape
    tolerance = 1e-3 if array.dtype == np.float16 else 1e-6
    np.testing.assert_allclose(out.astype(np.float64), array.astype(np.float64), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 9, 13), (2, 4, 9, 13), (1, 9, 13)])
def test_torch_round_trip_keeps_dtype_device_and_shape(dtype, shape):
    t = torch.rand(shape, dtype=torch.float64).to(dtype)
    x, spec = images.to_tensor(t)
    assert x.dtype == torch.float32 and x.ndim == 4
    out = images.from_tensor(x, spec)
    assert out.dtype == dtype and out.shape == t.shape and out.device == t.device
    assert torch.equal(out, t.float().to(dtype))  # the network computes in float32


def test_exif_orientation_is_applied_and_reset(tmp_path):
    im = Image.fromarray(RGB8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90 degrees clockwise
    path = tmp_path / "rotated.png"
    im.save(path, exif=exif)
    x, spec = images.to_tensor(str(path))
    assert x.shape[2:] == (13, 9)
    expected = np.asarray(im.transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(np.asarray(images.from_tensor(x, spec)), expected)
    restored = Image.Exif()
    restored.load(spec.info["exif"])
    assert restored.get(0x0112, 1) == 1


def test_icc_profile_is_kept_through_a_file(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "tagged.png"
    Image.fromarray(RGB8).save(path, icc_profile=icc)
    x, spec = images.to_tensor(path)
    out = images.from_tensor(x, spec)
    assert out.info["icc_profile"] == icc
    images.save_image(out, tmp_path / "out.jpg")
    with Image.open(tmp_path / "out.jpg") as back:
        assert back.info["icc_profile"] == icc


def test_colour_key_transparency_becomes_alpha():
    im = Image.fromarray(RGB8)
    im.info["transparency"] = tuple(int(v) for v in RGB8[0, 0])
    x, spec = images.to_tensor(im)
    assert spec.channels == 4 and spec.mode == "RGBA" and float(x[0, 3, 0, 0]) == 0.0


def test_save_image_keeps_sixteen_bits_in_png_and_scales_for_jpeg(tmp_path):
    ramp = Image.fromarray(np.arange(65536, dtype=np.uint16).reshape(256, 256))
    images.save_image(ramp, tmp_path / "ramp.png")
    with Image.open(tmp_path / "ramp.png") as back:
        assert np.array_equal(np.asarray(back).astype(np.uint16), np.asarray(ramp))
    images.save_image(ramp, tmp_path / "ramp.jpg")
    with Image.open(tmp_path / "ramp.jpg") as back:  # scaled to 8 bits, not clipped at 255
        assert back.mode == "L" and abs(int(np.asarray(back)[-1, -1]) - 255) <= 2
        assert abs(int(np.asarray(back)[128, 0]) - 128) <= 2
    images.save_image(Image.fromarray(RGBA8), tmp_path / "x.webp")
    assert sorted(os.listdir(tmp_path)) == ["ramp.jpg", "ramp.png", "x.webp"]  # no temporary files left
    with pytest.raises(ValueError, match="unsupported output format 'gif'"):
        images.save_image(ramp, tmp_path / "ramp.gif")


def test_find_images_walks_folders_and_globs(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for rel in ("a.png", "sub/b.JPG", "notes.txt", "out/c.png"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(b"")
    found, unmatched = images.find_images(
        [tmp_path / "in", str(tmp_path / "in" / "*.png"), tmp_path / "missing.png"], exclude=tmp_path / "in" / "out"
    )
    rels = [str(rel) for _, rel in found]
    assert rels == ["a.png", os.path.join("sub", "b.JPG")]  # the glob's a.png is the folder's: listed once
    assert unmatched == [str(tmp_path / "missing.png")]


BAD_INPUTS = [
    (np.zeros((0, 5, 3), np.uint8), ValueError, "empty"),
    (Image.new("RGB", (0, 4)), ValueError, "empty"),
    (torch.zeros(3, 4, 0), ValueError, "empty"),
    (torch.zeros(0, 3, 4, 4), ValueError, "empty"),
    (np.zeros((4, 5, 5), np.uint8), ValueError, "C in 1..4"),
    (np.zeros((2, 4, 5, 3), np.uint8), ValueError, "H x W"),
    (torch.zeros(5, 4, 4), ValueError, "C in 1..4"),
    (torch.zeros(4, 4), ValueError, "C x H x W"),
    (np.full((4, 4), np.nan, np.float32), ValueError, "NaN or infinite"),
    (torch.full((3, 4, 4), float("inf")), ValueError, "NaN or infinite"),
    (np.full((4, 4, 3), 1.5), ValueError, r"\[0, 1\], found 1.5"),
    (torch.full((3, 4, 4), -0.25), ValueError, r"\[0, 1\], found -0.25"),
    (Image.fromarray(np.full((4, 4), -3, np.int32)), ValueError, r"\[0, 65535\]"),
    (Image.fromarray(np.full((4, 4), 300.0, np.float32)), ValueError, r"\[0, 255\]"),
    (np.zeros((4, 4), np.int32), TypeError, "dtype int32"),
    (torch.zeros(3, 4, 4, dtype=torch.uint8), TypeError, "floating-point"),
    ([[0.5]], TypeError, "list"),
    (Image.new("RGBa", (4, 4)), ValueError, "unsupported PIL mode 'RGBa'"),
]


@pytest.mark.parametrize(("image", "error", "message"), BAD_INPUTS, ids=[m for _, _, m in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(image, error, message):
    with pytest.raises(error, match=message):
        images.to_tensor(image)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image file"):
        images.to_tensor(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="not a file"):
        images.to_tensor(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match="cannot read image"):
        images.to_tensor(str(tmp_path / "bad.png"))
    buf = io.BytesIO()
    Image.fromarray(RGB8).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="cannot read image"):
        images.open_image(tmp_path / "cut.png")

"""imresize against the MATLAB-made Set5 LR images, and its contract."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fdiwn_sr.training import imresize


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reproduces_matlab_set5_lr(reference_dir, scale):
    hr_dir = reference_dir / "set5" / f"x{scale}" / "HR"
    names = sorted(p.name for p in hr_dir.glob("*.png"))
    assert len(names) == 5
    for name in names:
        hr = np.asarray(Image.open(hr_dir / name).convert("RGB"))
        matlab = np.asarray(Image.open(hr_dir.parent / "LR" / name).convert("RGB")).astype(int)
        ours = imresize(hr, 1 / scale)
        assert ours.dtype == np.uint8 and ours.shape == matlab.shape, name
        diff = np.abs(ours.astype(int) - matlab)
        assert diff.max() <= 1, f"{name} x{scale}: {diff.max()} levels off"
        assert (diff == 0).mean() >= 0.99, f"{name} x{scale}: only {(diff == 0).mean():.4f} of pixels equal"


def test_pil_bicubic_fails_the_same_criterion(reference_dir):
    """The check above discriminates: PIL's (antialiased) bicubic is a different degradation."""
    hr = Image.open(reference_dir / "set5" / "x4" / "HR" / "bird.png").convert("RGB")
    matlab = np.asarray(Image.open(reference_dir / "set5" / "x4" / "LR" / "bird.png").convert("RGB")).astype(int)
    pil = np.asarray(hr.resize((hr.width // 4, hr.height // 4), Image.BICUBIC)).astype(int)
    assert (pil == matlab).mean() < 0.9 and np.abs(pil - matlab).max() > 1


def test_float_input_keeps_precision_and_matches_uint8_on_smooth_images():
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(40.0), np.arange(36.0)) * 2.5 + rng.uniform(0, 0.2, (40, 36))
    out = imresize(ramp, 0.5)
    assert out.dtype == np.float64 and out.shape == (20, 18)
    # A linear ramp stays linear under a normalised symmetric kernel, away from the replicated edges.
    assert np.allclose(np.diff(out[4:-4, 4:-4], axis=1), 5.0, atol=0.2)
    as_uint8 = imresize(np.clip(ramp, 0, 255).round().astype(np.uint8), 0.5).astype(float)
    assert np.abs(as_uint8 - out).max() <= 1.0


def test_constant_image_is_unchanged_in_both_directions():
    img = np.full((17, 23, 3), 77, np.uint8)
    for scale in (0.25, 1 / 3, 2, 3.5):
        out = imresize(img, scale)
        assert (out == 77).all() and out.dtype == np.uint8


def test_output_sizes_follow_matlab():
    img = np.zeros((255, 100), np.uint8)
    assert imresize(img, 1 / 3).shape == (85, 34)  # 255 * (1/3) is 85, not ceil(84.999...+eps)
    assert imresize(img, 2).shape == (510, 200)
    assert imresize(img, output_shape=(50, 30)).shape == (50, 30)
    assert imresize(np.zeros((8, 8, 4), np.float32), 0.5).shape == (4, 4, 4)


def test_upscaling_by_three_passes_through_the_input_samples():
    """At x3 every third output centre lands on an input pixel, and the cubic kernel interpolates:
    this pins MATLAB's coordinate convention (u = x/scale + (1 - 1/scale)/2)."""
    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    out = imresize(img, 3)
    assert out.shape == (21, 27, 3)
    assert (out[1::3, 1::3] == img).all()
    assert not (out[0::3, 0::3] == img).all()


@pytest.mark.parametrize(
    ("image", "kwargs", "error"),
    [
        ([[1, 2], [3, 4]], {"scale": 0.5}, TypeError),
        (np.zeros((4, 4), np.int32), {"scale": 0.5}, TypeError),
        (np.zeros(4, np.uint8), {"scale": 0.5}, ValueError),
        (np.zeros((4, 4), np.uint8), {}, ValueError),
        (np.zeros((4, 4), np.uint8), {"scale": 0.5, "output_shape": (2, 2)}, ValueError),
        (np.zeros((4, 4), np.uint8), {"scale": -1}, ValueError),
        (np.zeros((4, 4), np.uint8), {"output_shape": (2, 0)}, ValueError),
    ],
)
def test_bad_input_raises_clear_errors(image, kwargs, error):
    with pytest.raises(error):
        imresize(image, **kwargs)

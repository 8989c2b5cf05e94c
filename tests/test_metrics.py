"""psnr_y / ssim_y on cases with known answers, and the paper's Set5 numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fdiwn_sr.metrics import psnr_y, rgb_to_y, ssim_y

RNG = np.random.default_rng(0)


def test_identical_images():
    img = RNG.integers(0, 256, (40, 37, 3)).astype(np.uint8)
    assert psnr_y(img, img) == float("inf")
    assert ssim_y(img, img) == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_known_noise_on_grayscale():
    a = RNG.uniform(50, 200, (64, 48))
    b = a + RNG.choice([-5.0, 5.0], size=a.shape)  # MSE exactly 25
    assert psnr_y(a, b) == pytest.approx(10 * np.log10(255**2 / 25), abs=1e-9)


def test_y_of_a_constant_offset_in_all_channels():
    a = np.full((20, 20, 3), 100.0)
    # Y = 16 + (65.481 + 128.553 + 24.966) * v / 255: a +10 offset moves Y by 219/255 * 10
    dy = 219.0 / 255.0 * 10
    assert psnr_y(a, a + 10) == pytest.approx(10 * np.log10(255**2 / dy**2), abs=1e-9)
    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.full((1, 1, 3), 255.0))[0, 0] == pytest.approx(235.0)


def test_crop_removes_the_border():
    a = np.zeros((30, 30))
    b = a.copy()
    b[:3, :] = 255  # differences only in the top 3 rows
    assert psnr_y(a, b, crop=3) == float("inf")
    assert psnr_y(a, b, crop=2) < 20


def test_ssim_drops_with_noise_and_is_symmetric_for_odd_sizes():
    a = RNG.uniform(0, 255, (33, 51))
    light = np.clip(a + RNG.normal(0, 2, a.shape), 0, 255)
    heavy = np.clip(a + RNG.normal(0, 40, a.shape), 0, 255)
    assert 1.0 > ssim_y(a, light) > ssim_y(a, heavy) > 0
    assert ssim_y(a, heavy) == pytest.approx(ssim_y(heavy, a), abs=1e-12)


def test_ssim_of_a_constant_shift_of_a_flat_image():
    # Flat images: variances are 0, so SSIM reduces to the luminance term.
    a, b = np.full((20, 20), 100.0), np.full((20, 20), 110.0)
    c1 = (0.01 * 255) ** 2
    assert ssim_y(a, b) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-12)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="differ in size"):
        psnr_y(np.zeros((10, 10)), np.zeros((10, 11)))
    with pytest.raises(ValueError, match="cannot crop"):
        psnr_y(np.zeros((6, 6)), np.zeros((6, 6)), crop=3)
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim_y(np.zeros((12, 12)), np.zeros((12, 12)), crop=1)
    with pytest.raises(ValueError, match="H x W x 3"):
        psnr_y(np.zeros((5, 5, 4)), np.zeros((5, 5, 4)))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_evaluate_reproduces_the_reference_set5_scores_and_images(scale, reference_dir, converted, tmp_path):
    set5 = reference_dir / "set5" / f"x{scale}"
    out = tmp_path / "sr"
    r = subprocess.run(
        [
            sys.executable, "-m", "fdiwn_sr", "evaluate", "--hr", str(set5 / "HR"), "--lr", str(set5 / "LR"),
            "--scale", str(scale), "--weights", str(converted[scale]), "--save", str(out), "--json",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    got = json.loads(r.stdout)
    expected = json.loads((reference_dir / "expected_metrics.json").read_text())[f"x{scale}"]
    assert got["mean_psnr_y"] == pytest.approx(expected["set5_mean_psnr_y"], abs=0.005)
    assert got["mean_ssim_y"] == pytest.approx(expected["set5_mean_ssim_y"], abs=0.0005)
    golden = reference_dir / "golden" / f"set5_x{scale}_official_sr"
    for name in expected["per_image"]:
        ours = np.asarray(Image.open(out / f"{name}.png")).astype(int)
        theirs = np.asarray(Image.open(golden / f"{name}.png")).astype(int)
        diff = np.abs(ours - theirs)
        assert diff.max() <= 1, name
        assert (diff > 0).mean() <= 0.001, name


def test_evaluate_table_output(reference_dir, converted):
    set5 = reference_dir / "set5" / "x4"
    r = subprocess.run(
        [sys.executable, "-m", "fdiwn_sr", "evaluate", "--hr", str(set5 / "HR"), "--lr", str(set5 / "LR"),
         "--scale", "4", "--weights", str(converted[4])],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = r.stdout.splitlines()
    assert lines[0] == "FDIWN x4 (fdiwn)"
    assert lines[-1].split()[0] == "mean"
    assert float(lines[-1].split()[1]) == pytest.approx(32.2169, abs=0.005)

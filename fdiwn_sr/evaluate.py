"""Benchmark evaluation: upscale LR images and score them against HR (paper protocol)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import IMAGE_SUFFIXES, save_image
from .metrics import psnr_y, ssim_y
from .upscaler import Upscaler

__all__ = ["evaluate_folder", "format_table"]


def evaluate_folder(upscaler: Upscaler, hr_dir: Path, lr_dir: Path, save_dir: str | None = None) -> dict[str, Any]:
    """Per-image and mean PSNR-Y / SSIM-Y; images are paired by file stem."""
    for d in (hr_dir, lr_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"not a folder: {d}")
    lr_files = {p.stem: p for p in sorted(lr_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    hr_files = {p.stem: p for p in sorted(hr_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    names = sorted(lr_files.keys() & hr_files.keys())
    if not names:
        raise ValueError(f"no images with matching names in {hr_dir} and {lr_dir}")
    s = upscaler.scale
    per_image: dict[str, dict[str, float]] = {}
    for name in names:
        with Image.open(lr_files[name]) as im:
            sr = upscaler.upscale(im.convert("RGB"))
        with Image.open(hr_files[name]) as im:
            hr = np.asarray(im.convert("RGB"))
        if hr.shape[:2] != (sr.height, sr.width):
            raise ValueError(f"{name}: HR is {hr.shape[1]}x{hr.shape[0]}, upscaled LR is {sr.width}x{sr.height}")
        if save_dir is not None:
            save_image(sr, Path(save_dir) / f"{name}.png")
        out = np.asarray(sr)
        per_image[name] = {"psnr_y": psnr_y(out, hr, crop=s), "ssim_y": ssim_y(out, hr, crop=s)}
    return {
        "scale": s,
        "variant": upscaler.variant,
        "per_image": per_image,
        "mean_psnr_y": float(np.mean([v["psnr_y"] for v in per_image.values()])),
        "mean_ssim_y": float(np.mean([v["ssim_y"] for v in per_image.values()])),
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [f"FDIWN x{result['scale']} ({result['variant']})", f"{'image':<16}{'PSNR-Y':>10}{'SSIM-Y':>10}"]
    for name, m in result["per_image"].items():
        lines.append(f"{name:<16}{m['psnr_y']:>10.4f}{m['ssim_y']:>10.5f}")
    lines.append(f"{'mean':<16}{result['mean_psnr_y']:>10.4f}{result['mean_ssim_y']:>10.5f}")
    return "\n".join(lines)

"""PSNR-Y and SSIM-Y by the paper's protocol.

BT.601 luma on the 0..255 range, ``crop`` pixels removed from each border,
SSIM with an 11x11 Gaussian window (sigma 1.5), K = (0.01, 0.03), valid
filtering, all in float64. Grayscale input is taken as luma already.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

__all__ = ["psnr_y", "rgb_to_y", "ssim_y"]


def rgb_to_y(img: ArrayLike) -> np.ndarray:
    """BT.601 luma (16..235) of an RGB image on 0..255; a 2-D image is returned as is."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return a
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an H x W or H x W x 3 image, got shape {a.shape}")
    return 16.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0


def _prepare(a: ArrayLike, b: ArrayLike, crop: int) -> tuple[np.ndarray, np.ndarray]:
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    if ya.shape != yb.shape:
        raise ValueError(f"images differ in size: {ya.shape} vs {yb.shape}")
    if crop < 0 or min(ya.shape) <= 2 * crop:
        raise ValueError(f"cannot crop {crop} pixels from each border of a {ya.shape} image")
    if crop:
        ya, yb = ya[crop:-crop, crop:-crop], yb[crop:-crop, crop:-crop]
    return ya, yb


def psnr_y(sr: ArrayLike, hr: ArrayLike, crop: int = 0) -> float:
    """PSNR of the Y channel in dB; ``inf`` for identical images."""
    a, b = _prepare(sr, hr, crop)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_y(sr: ArrayLike, hr: ArrayLike, crop: int = 0) -> float:
    """Mean SSIM of the Y channel (Wang et al. 2004, valid filtering)."""
    a, b = _prepare(sr, hr, crop)
    if min(a.shape) < 11:
        raise ValueError(f"SSIM needs at least 11 x 11 pixels after cropping, got {a.shape}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    w = _gaussian_window()
    x = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    y = torch.from_numpy(np.ascontiguousarray(b))[None, None]
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mx**2
    syy = F.conv2d(y * y, w) - my**2
    sxy = F.conv2d(x * y, w) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())

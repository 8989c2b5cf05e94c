"""MATLAB-compatible bicubic ``imresize``: the degradation the benchmarks' LR images were made with.

PIL's and torch's bicubic differ from MATLAB's (no antialiasing, another kernel
width, other rounding), and a network trained on one degradation scores worse
on the other. This follows MATLAB's ``imresize(A, scale, 'bicubic')``: cubic
kernel with a = -0.5, widened by 1/scale when shrinking (antialiasing),
edge pixels replicated, one dimension at a time starting with the one shrunk
most, and for uint8 input a uint8 result after each pass (MATLAB keeps the
class), rounded half away from zero.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["imresize"]

_KERNEL_WIDTH = 4.0


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and (0-based, edge-clamped) source indices of each output pixel, as MATLAB computes them."""
    width = _KERNEL_WIDTH / scale if scale < 1 else _KERNEL_WIDTH
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    ind = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - ind
    weights = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    indices = np.clip(ind.astype(np.int64) - 1, 0, in_len - 1)  # MATLAB replicates the end points
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _resize_axis(a: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray, to_uint8: bool) -> np.ndarray:
    moved = np.moveaxis(a, axis, 0).astype(np.float64, copy=False)
    shape = (weights.shape[0],) + (1,) * (moved.ndim - 1)
    acc = np.zeros((weights.shape[0], *moved.shape[1:]))
    for k in range(weights.shape[1]):  # one tap at a time: memory stays at one output's size
        acc += weights[:, k].reshape(shape) * moved[indices[:, k]]
    out = np.moveaxis(acc, 0, axis)
    if to_uint8:
        out = np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    return out


def _output_length(n: int, scale: float) -> int:
    exact = n * scale
    # 255 * (1/3) is 84.99999999999999 in floating point; MATLAB's intent (and ours) is 85.
    return max(1, round(exact) if abs(exact - round(exact)) < 1e-9 else math.ceil(exact))


def imresize(
    image: np.ndarray, scale: float | None = None, *, output_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Resize an H x W or H x W x C array like MATLAB's ``imresize(image, scale, 'bicubic')``.

    ``scale`` multiplies the size (``1/4`` shrinks four times); alternatively give
    ``output_shape`` as (height, width). uint8 in gives uint8 out (rounded as
    MATLAB rounds); float in gives float64 out, unclipped.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"imresize expects a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"imresize expects an H x W or H x W x C image, got shape {image.shape}")
    to_uint8 = image.dtype == np.uint8
    if not to_uint8 and not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"imresize supports uint8 and float arrays, got {image.dtype}")
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    in_shape = image.shape[:2]
    if scale is not None:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        scales = (float(scale), float(scale))
        out_shape = tuple(_output_length(n, float(scale)) for n in in_shape)
    else:
        if len(output_shape) != 2 or not all(isinstance(n, int) and n > 0 for n in output_shape):
            raise ValueError(f"output_shape must be two positive ints, got {output_shape!r}")
        out_shape = tuple(output_shape)
        scales = (out_shape[0] / in_shape[0], out_shape[1] / in_shape[1])
    out = image
    # MATLAB resizes the dimension with the smallest scale first (rows first on a tie).
    for axis in sorted((0, 1), key=lambda d: scales[d]):
        weights, indices = _contributions(in_shape[axis], out_shape[axis], scales[axis])
        out = _resize_axis(out, axis, weights, indices, to_uint8)
    return out if to_uint8 else out.astype(np.float64)

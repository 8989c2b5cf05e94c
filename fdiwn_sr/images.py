"""Images in and out: PIL (every common mode), numpy, torch and files, as (B, C, H, W) float32 in [0, 1].

``to_tensor`` remembers how the input looked (kind, PIL mode, dtype, device,
layout, ICC profile, EXIF, palette) in a :class:`Spec`; ``from_tensor`` gives
the upscaled result back in that same form. C is 1 (gray), 2 (gray + alpha),
3 (RGB) or 4 (RGBA). Integer images are scaled by their full range (255 or
65535) so 16-bit data keeps 16-bit precision end to end.
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_write_bytes

__all__ = [
    "IMAGE_SUFFIXES",
    "OUTPUT_FORMATS",
    "ImageLike",
    "Spec",
    "find_images",
    "from_tensor",
    "open_image",
    "save_image",
    "to_tensor",
]

ImageLike = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike

# PIL mode -> (mode the pixels are read in, full-scale value). Modes with no
# network-friendly layout are converted for reading and converted back after.
_PIL_READ: dict[str, tuple[str | None, float]] = {
    "1": (None, 1.0),
    "L": (None, 255.0),
    "LA": (None, 255.0),
    "RGB": (None, 255.0),
    "RGBA": (None, 255.0),
    "CMYK": ("RGB", 255.0),
    "YCbCr": ("RGB", 255.0),
    "I;16": (None, 65535.0),
    "I;16L": (None, 65535.0),
    "I;16B": (None, 65535.0),
    "I;16N": (None, 65535.0),
    "I": (None, 65535.0),  # 32-bit integer images are taken to hold 16-bit data (as Pillow reads 16-bit PNGs)
    "F": (None, 255.0),  # Pillow's float convention: convert("F") of an 8-bit image gives 0..255
}
_UINT16_LAYOUT = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}
_NUMPY_SCALE = {"u1": 255.0, "u2": 65535.0, "f2": 1.0, "f4": 1.0, "f8": 1.0}
_KEPT_INFO = ("icc_profile", "exif")
OUTPUT_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}  # what save_image writes
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".tga", ".ppm", ".pgm")


@dataclass(frozen=True)
class Spec:
    """How an input looked, so that its output can be given back in the same form."""

    kind: str  # "pil", "numpy" or "torch"
    channels: int  # of the tensor to_tensor returned: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    mode: str | None = None  # PIL mode
    info: dict[str, Any] = field(default_factory=dict)  # PIL metadata carried over (ICC profile, EXIF)
    palette: Image.Image | None = None  # "P" images: a strip of every palette entry, to map colours back
    dtype: Any = None  # numpy or torch dtype
    ndim: int = 0  # numpy 2 (H x W) or 3; torch 3 (C x H x W) or 4
    device: torch.device | None = None


def to_tensor(image: ImageLike) -> tuple[torch.Tensor, Spec]:
    """(B, C, H, W) float32 in [0, 1] (on the input's device for tensors, else CPU) and its Spec."""
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image)
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, np.ndarray):
        return _from_numpy(image)
    if isinstance(image, torch.Tensor):
        return _from_torch(image)
    raise TypeError(
        f"expected a PIL image, numpy array, torch tensor or file path, got {type(image).__module__}."
        f"{type(image).__name__}"
    )


def from_tensor(y: torch.Tensor, spec: Spec) -> Image.Image | np.ndarray | torch.Tensor:
    """Give a (B, C, H, W) result (any range; clamped to [0, 1] here) back in the form ``spec`` describes."""
    if y.shape[1] != spec.channels:
        raise ValueError(f"expected {spec.channels} channels, got {y.shape[1]}")
    y = y.clamp(0.0, 1.0)
    if spec.kind == "torch":
        y = y.to(spec.device, spec.dtype)
        return y if spec.ndim == 4 else y[0]
    hwc = y[0].permute(1, 2, 0)
    if spec.kind == "numpy":
        a = _quantise(hwc, _NUMPY_SCALE[np.dtype(spec.dtype).str[1:]], np.dtype(spec.dtype))
        return a[..., 0] if spec.ndim == 2 else a
    return _to_pil(hwc, spec)


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read a whole image file; a missing file is FileNotFoundError, an unreadable one ValueError."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such image file: {p}" if not p.exists() else f"not a file: {p}")
    try:
        with Image.open(p) as im:
            im.load()
            return im
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {p}: {e}") from e


def find_images(
    inputs: Sequence[str | os.PathLike[str]], exclude: str | os.PathLike[str] | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Image files named, found under folders (recursively) or matched by globs, in a stable order.

    Returns (file, path relative to the folder it was found in) pairs, so that
    outputs can mirror a folder's layout, and the inputs that matched nothing.
    Folders and globs yield files with an image suffix only; files under
    ``exclude`` (an output folder inside an input folder) are left out.
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[tuple[Path, Path]] = []
    unmatched: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            found.append((p, Path(p.name)))
            continue
        if p.is_dir():
            candidates = [(f, f.relative_to(p)) for f in sorted(p.rglob("*"))]
        elif any(c in str(item) for c in "*?["):
            candidates = [(Path(m), Path(Path(m).name)) for m in sorted(glob.glob(str(item), recursive=True))]
        else:
            candidates = []
        matches = [
            (f, rel)
            for f, rel in candidates
            if f.is_file()
            and f.suffix.lower() in IMAGE_SUFFIXES
            and (skip is None or not f.resolve().is_relative_to(skip))
        ]
        if not matches:
            unmatched.append(str(item))
        found += matches
    return found, unmatched


def save_image(image: Image.Image, path: str | os.PathLike[str], fmt: str | None = None) -> None:
    """Write atomically (temp file + rename) in ``fmt`` (png, jpg, webp; default from the suffix).

    Modes a format cannot hold are converted: 16-bit and float to 8 bits for JPEG
    and WebP (quality 95), alpha dropped for JPEG; ICC profile and EXIF are written along.
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    pil_format = OUTPUT_FORMATS.get(fmt)
    if pil_format is None:
        raise ValueError(f"unsupported output format {fmt!r}; choose png, jpg or webp")
    im = _savable(image, pil_format)
    kw: dict[str, Any] = {k: image.info[k] for k in _KEPT_INFO if image.info.get(k)}
    if pil_format != "PNG":
        kw["quality"] = 95
    buf = io.BytesIO()
    im.save(buf, format=pil_format, **kw)
    atomic_write_bytes(path, buf.getvalue())


def _savable(im: Image.Image, pil_format: str) -> Image.Image:
    """The image in a mode ``pil_format`` can store: 16 bits kept in PNG, scaled (never clipped) to 8 elsewhere."""
    mode = im.mode
    deep = mode in ("I", "F") or mode.startswith("I;16")
    if pil_format == "PNG":
        if mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"):
            return im
        return _to_pil(_read_pil(im)[0], Spec("pil", 1, "I;16")) if deep else im.convert("RGB")
    if deep:
        im, mode = _to_pil(_read_pil(im)[0], Spec("pil", 1, "L")), "L"
    if pil_format == "JPEG":  # JPEG holds no alpha
        return im if mode in ("L", "RGB", "CMYK") else im.convert("L" if mode in ("1", "LA") else "RGB")
    if mode in ("RGB", "RGBA"):
        return im
    return im.convert("RGBA" if im.has_transparency_data else "RGB")


def _read_pil(im: Image.Image) -> tuple[torch.Tensor, str]:
    """(H, W, C) float32 in [0, 1] and the mode the output should have."""
    mode = im.mode
    if mode in ("L", "RGB") and "transparency" in im.info:  # colour-key transparency becomes an alpha channel
        im = im.convert(mode + "A" if mode == "L" else "RGBA")
        mode = im.mode
    if mode == "P":
        pixels, scale = np.asarray(im.convert("RGBA" if im.has_transparency_data else "RGB")), 255.0
    elif mode in _PIL_READ:
        read_as, scale = _PIL_READ[mode]
        pixels = np.asarray(im if read_as is None else im.convert(read_as))
    else:
        raise ValueError(f"unsupported PIL mode {mode!r}; supported: P and {', '.join(_PIL_READ)}")
    x = torch.from_numpy(pixels.astype(np.float32))
    x = x[..., None] if x.ndim == 2 else x
    _check_values(x, scale, f"PIL mode {mode}")
    return x.div_(scale), mode


def _from_pil(im: Image.Image) -> tuple[torch.Tensor, Spec]:
    _check_size(im.height, im.width)
    if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation: show the image the way a viewer would
        im = ImageOps.exif_transpose(im)
    x, mode = _read_pil(im)
    info = {k: im.info[k] for k in _KEPT_INFO if im.info.get(k)}
    palette = _palette_strip(im) if mode == "P" else None
    if palette is not None and "transparency" in im.info:
        info["transparency"] = im.info["transparency"]
    return x.permute(2, 0, 1)[None].contiguous(), Spec("pil", x.shape[2], mode, info, palette)


def _palette_strip(im: Image.Image) -> Image.Image:
    """An N x 1 "P" image of entries 0..N-1 carrying ``im``'s palette (RGB or RGBA) and transparency."""
    rawmode = im.palette.mode if im.palette is not None else "RGB"
    colours = im.getpalette(rawmode) or [0, 0, 0]
    n = len(colours) // len(rawmode)
    strip = Image.frombytes("P", (n, 1), bytes(range(n)))
    strip.putpalette(colours, rawmode)
    if "transparency" in im.info:
        strip.info["transparency"] = im.info["transparency"]
    return strip


def _to_pil(hwc: torch.Tensor, spec: Spec) -> Image.Image:
    mode = spec.mode or "RGB"
    h, w = hwc.shape[:2]
    if mode == "1":
        out = Image.fromarray(hwc[..., 0].cpu().numpy() >= 0.5)
    elif mode in _UINT16_LAYOUT:
        out = Image.frombytes(mode, (w, h), _quantise(hwc, 65535.0, np.dtype(_UINT16_LAYOUT[mode])).tobytes())
    elif mode == "I":
        out = Image.fromarray(_quantise(hwc, 65535.0, np.dtype(np.int32))[..., 0])
    elif mode == "F":
        out = Image.fromarray(hwc[..., 0].cpu().numpy().astype(np.float32) * np.float32(255.0))
    else:
        a = _quantise(hwc, 255.0, np.dtype(np.uint8))
        if mode == "P" and spec.palette is not None:
            out = _encode_palette(a, spec.palette)
        else:
            out = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
            if out.mode != mode:  # CMYK and YCbCr went through RGB
                out = out.convert(mode)
    out.info.update(spec.info)
    return out


def _encode_palette(a: np.ndarray, strip: Image.Image) -> Image.Image:
    """Map RGB(A) pixels to the nearest entry of the source palette; a pixel's alpha picks transparent entries."""
    entries = np.asarray(strip.convert("RGBA"))[0].astype(np.int32)  # (N, 4)
    lookup = Image.new("P", (1, 1))  # all 256 slots filled by repeating the N entries: index % N is the entry
    lookup.putpalette(np.resize(entries[:, :3], (256, 3)).astype(np.uint8).tobytes())
    rgb = np.ascontiguousarray(a[..., :3])
    idx = np.array(Image.fromarray(rgb).quantize(palette=lookup, dither=Image.Dither.NONE)).reshape(-1) % len(entries)
    if a.shape[2] == 4:
        want_opaque = a[..., 3].reshape(-1) >= 128
        opaque = entries[:, 3] >= 128
        for cls in (True, False):
            candidates = np.flatnonzero(opaque == cls)
            misplaced = np.flatnonzero((opaque[idx] != want_opaque) & (want_opaque == cls))
            if candidates.size == 0:
                continue
            for chunk in np.array_split(misplaced, misplaced.size // 65536 + 1):
                d = ((rgb.reshape(-1, 3)[chunk, None].astype(np.int32) - entries[None, candidates, :3]) ** 2).sum(-1)
                idx[chunk] = candidates[d.argmin(1)]
    out = Image.frombytes("P", (a.shape[1], a.shape[0]), idx.astype(np.uint8).tobytes())
    rawmode = strip.palette.mode
    out.putpalette(strip.getpalette(rawmode), rawmode)
    return out


def _quantise(hwc: torch.Tensor, scale: float, dtype: np.dtype) -> np.ndarray:
    """Round [0, 1] values to ``dtype``: integers get their full range, floats stay floats."""
    if dtype.kind == "f":
        return hwc.cpu().numpy().astype(dtype)
    return (hwc * scale).round_().cpu().numpy().astype(dtype)


def _from_numpy(a: np.ndarray) -> tuple[torch.Tensor, Spec]:
    key = a.dtype.str[1:]
    if key not in _NUMPY_SCALE:
        raise TypeError(f"unsupported array dtype {a.dtype}; expected uint8, uint16 or float16/32/64 in [0, 1]")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected an H x W or H x W x C array with C in 1..4, got shape {a.shape}")
    _check_size(a.shape[0], a.shape[1])
    hwc = a[..., None] if a.ndim == 2 else a
    x = torch.from_numpy(hwc.astype(np.float32))  # a copy: the caller's array is never touched
    scale = _NUMPY_SCALE[key]
    _check_values(x, scale, f"{a.dtype} array")
    x = x.permute(2, 0, 1)[None]
    return (x / scale).contiguous(), Spec("numpy", hwc.shape[2], dtype=a.dtype, ndim=a.ndim)


def _from_torch(t: torch.Tensor) -> tuple[torch.Tensor, Spec]:
    if not t.is_floating_point():
        raise TypeError(f"expected a floating-point tensor in [0, 1], got {t.dtype}; convert with t.float() / 255")
    if t.ndim not in (3, 4) or t.shape[-3] not in (1, 2, 3, 4):
        raise ValueError(f"expected a C x H x W or B x C x H x W tensor with C in 1..4, got shape {tuple(t.shape)}")
    if t.ndim == 4 and t.shape[0] == 0:
        raise ValueError("image batch is empty (B = 0)")
    _check_size(t.shape[-2], t.shape[-1])
    x = t.detach().to(torch.float32)
    _check_values(x, 1.0, f"{t.dtype} tensor")
    x = x[None] if t.ndim == 3 else x
    return x.contiguous(), Spec("torch", x.shape[1], dtype=t.dtype, ndim=t.ndim, device=t.device)


def _check_size(h: int, w: int) -> None:
    if h == 0 or w == 0:
        raise ValueError(f"image is empty ({w} x {h} pixels)")


def _check_values(x: torch.Tensor, scale: float, what: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains NaN or infinite values")
    lo, hi = (float(v) for v in torch.aminmax(x))
    if lo < 0 or hi > scale:
        raise ValueError(f"{what} values must lie in [0, {scale:g}], found {lo:g}..{hi:g}")

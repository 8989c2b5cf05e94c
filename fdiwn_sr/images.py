"""Images in and out: PIL (every common mode), numpy, torch and files, as (B, C, H, W) float32 in [0, 1].

``to_tensor`` remembers how the input looked (kind, PIL mode, dtype, device,
layout, ICC profile, EXIF, palette) in a :class:`Spec`; ``from_tensor`` gives
the upscaled result back in that same form. C is 1 (gray), 2 (gray + alpha),
3 (RGB) or 4 (RGBA). Integer images are scaled by their full range (255 or
65535) so 16-bit data keeps 16-bit precision end to end.

Files are read by :func:`open_image`, which refuses what would come out wrong:
animations (one frame of many is not the picture), images over the pixel
limit (``FDIWN_SR_MAX_PIXELS``), and says so (:class:`PrecisionWarning`) when
Pillow reads a 16-bit-per-channel colour file as 8 bits.
"""

from __future__ import annotations

import fnmatch
import io
import os
import re
import warnings
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
    "F": (None, 255.0),  # 0..255 (Pillow's convert("F")), or 0..1 when every value is in [0, 1]: see _float_scale
}
_UINT16_LAYOUT = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}
_NUMPY_SCALE = {"u1": 255.0, "u2": 65535.0, "f2": 1.0, "f4": 1.0, "f8": 1.0}
_KEPT_INFO = ("icc_profile", "exif")
OUTPUT_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}  # what save_image writes
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".tga", ".ppm", ".pgm")
MAX_PIXELS = 50_000_000  # default file size limit, below Pillow's decompression-bomb limit (89.5 MP)
MAX_PIXELS_ENV = "FDIWN_SR_MAX_PIXELS"


class PrecisionWarning(UserWarning):
    """A file holds more precision than Pillow reads from it (16-bit-per-channel colour comes in as 8 bits)."""


def max_pixels() -> int:
    """The largest image file (in pixels) :func:`open_image` reads by default: FDIWN_SR_MAX_PIXELS or 50 MP."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return MAX_PIXELS
    try:
        limit = int(float(value))
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV}={value!r} is not a number of pixels (e.g. 200000000)") from None
    if limit < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={value!r} must be a positive number of pixels")
    return limit


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
    scale: float = 255.0  # full-scale value of a PIL image's pixels ("F": 255 or 1, see _float_scale)


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


def open_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> Image.Image:
    """Read a whole still image file; refuse what would come out wrong.

    A missing file is FileNotFoundError; an unreadable or truncated one, an
    animation (several frames: upscaling one of them would silently drop the
    rest), or one over ``max_pixels`` (default :func:`max_pixels`) is ValueError.
    A 16-bit-per-channel RGB(A) PNG or TIFF is read as 8 bits by Pillow: a
    :class:`PrecisionWarning` says so.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such image file: {p}" if not p.exists() else f"not a file: {p}")
    try:
        with Image.open(p) as im:
            check_still_image(im, p, max_pixels)
            im.load()
            return im
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {p}: {e}") from e


def check_still_image(im: Image.Image, path: Path, max_pixels: int | None = None) -> None:
    """The checks open_image makes from a file's header alone (cheap: no pixels decoded)."""
    limit = max_pixels if max_pixels is not None else globals()["max_pixels"]()
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        raise ValueError(
            f"{path} is an animation or multi-page file ({frames} frames); fdiwn-sr upscales still images only. "
            "Extract the frames (e.g. ffmpeg -i in.gif frame%04d.png) and upscale those"
        )
    if im.width * im.height > limit:
        raise ValueError(
            f"{path} is {im.width} x {im.height} = {im.width * im.height / 1e6:.1f} megapixels, over the limit of "
            f"{limit / 1e6:g}; if you trust the file and have the memory, raise it with {MAX_PIXELS_ENV}=N "
            "(or --max-pixels N)"
        )
    depth = _colour_bit_depth(im, path)
    if depth > 8:
        warnings.warn(
            f"{path}: {depth}-bit-per-channel {im.mode} is read by Pillow as 8 bits; the output has 8 bits per "
            "channel. For the full depth, read it as a uint16 array (e.g. with tifffile or OpenCV) and upscale that",
            PrecisionWarning,
            stacklevel=3,
        )


def _colour_bit_depth(im: Image.Image, path: Path) -> int:
    """Bits per channel a colour PNG or TIFF stores (8 when unknown or gray: Pillow reads 16-bit gray fully)."""
    if im.mode not in ("RGB", "RGBA"):
        return 8
    if im.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(26)  # signature, IHDR length and type, width, height, then bit depth
        return header[24] if len(header) == 26 else 8
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, 8)  # BitsPerSample
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def find_images(
    inputs: Sequence[str | os.PathLike[str]],
    exclude: str | os.PathLike[str] | None = None,
    suffixes: Sequence[str] = IMAGE_SUFFIXES,
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Image files named, found under folders (recursively) or matched by globs, in a stable order.

    Returns (file, path relative to the folder it was found in) pairs, so that
    outputs can mirror a folder's layout, and the inputs that matched nothing.
    Folders and globs yield files with one of ``suffixes`` only; files under
    ``exclude`` (an output folder inside an input folder) are left out. Links to
    folders are not followed (no loops); a file reached twice is listed once.
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    unmatched: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            candidates = [(p, Path(p.name))]
        elif p.is_dir():
            candidates = [(f, f.relative_to(p)) for f in _walk(p)]
        elif any(c in str(item) for c in "*?["):
            candidates = [(f, Path(f.name)) for f in _glob(str(item))]
        else:
            candidates = []
        named, matched = p.is_file(), False
        for f, rel in candidates:
            real = f.resolve()
            if not f.is_file() or not (named or f.suffix.lower() in suffixes):
                continue
            if skip is not None and real.is_relative_to(skip):
                continue
            matched = True
            if real not in seen:
                seen.add(real)
                found.append((f, rel))
        if not matched:
            unmatched.append(str(item))
    return found, unmatched


def _walk(root: Path) -> list[Path]:
    """Every file under ``root``, sorted; links to folders are not entered."""
    files = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        files += [Path(folder) / n for n in names]
    return sorted(files)


def _glob(pattern: str) -> list[Path]:
    """``glob`` semantics (``**`` spans folders) over a walk that never follows a link to a folder."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    if not root.is_dir():
        return []
    regex = ""
    for i, part in enumerate(parts[fixed:]):
        last = i == len(parts) - fixed - 1
        if part == "**":
            regex += ".*" if last else "(?:.*/)?"
        else:
            regex += fnmatch.translate(part).removeprefix("(?s:").removesuffix(")\\Z").replace(".*", "[^/]*")
            regex += "" if last else "/"
    matcher = re.compile(regex + r"\Z", re.DOTALL)
    return [f for f in _walk(root) if matcher.match(f.relative_to(root).as_posix()) and not f.name.startswith(".")]


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


def _float_scale(pixels: np.ndarray) -> float:
    """Full scale of an "F" image: 1 when every value is in [0, 1] (float image files: TIFF, EXR-style), else 255.

    255 is Pillow's own convention (``convert("F")`` of an 8-bit image). An
    image meant as 0..255 whose brightest pixel is at most 1 (black to the eye)
    would be read as 0..1: the one case this rule gets wrong.
    """
    return 1.0 if pixels.size and float(np.nanmax(pixels)) <= 1.0 else 255.0


def _read_pil(im: Image.Image) -> tuple[torch.Tensor, str, float]:
    """(H, W, C) float32 in [0, 1], the mode the output should have, and the pixels' full-scale value."""
    mode = im.mode
    if mode in ("L", "RGB") and "transparency" in im.info:  # colour-key transparency becomes an alpha channel
        im = im.convert(mode + "A" if mode == "L" else "RGBA")
        mode = im.mode
    if mode == "P":
        pixels, scale = np.asarray(im.convert("RGBA" if im.has_transparency_data else "RGB")), 255.0
    elif mode in _PIL_READ:
        read_as, scale = _PIL_READ[mode]
        pixels = np.asarray(im if read_as is None else im.convert(read_as))
        if mode == "F":
            scale = _float_scale(pixels)
    else:
        raise ValueError(f"unsupported PIL mode {mode!r}; supported: P and {', '.join(_PIL_READ)}")
    x = torch.from_numpy(pixels.astype(np.float32))
    x = x[..., None] if x.ndim == 2 else x
    _check_values(x, scale, f"PIL mode {mode}")
    return x.div_(scale), mode, scale


def _from_pil(im: Image.Image) -> tuple[torch.Tensor, Spec]:
    _check_size(im.height, im.width)
    if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation: show the image the way a viewer would
        im = ImageOps.exif_transpose(im)
    x, mode, scale = _read_pil(im)
    info = {k: im.info[k] for k in _KEPT_INFO if im.info.get(k)}
    palette = _palette_strip(im) if mode == "P" else None
    if palette is not None and "transparency" in im.info:
        info["transparency"] = im.info["transparency"]
    return x.permute(2, 0, 1)[None].contiguous(), Spec("pil", x.shape[2], mode, info, palette, scale=scale)


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
        out = Image.fromarray(hwc[..., 0].cpu().numpy().astype(np.float32) * np.float32(spec.scale))
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
    quantised = Image.fromarray(rgb).quantize(palette=lookup, dither=Image.Dither.NONE)
    idx = np.asarray(quantised).reshape(-1).astype(np.intp) % len(entries)  # 256 entries do not fit in uint8
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
    """Round [0, 1] values to ``dtype``: integers get their full range, floats stay floats. Overwrites ``hwc``."""
    if dtype.kind == "f":
        return hwc.cpu().numpy().astype(dtype)
    return hwc.mul_(scale).round_().cpu().numpy().astype(dtype)  # in place: hwc is always a fresh copy here


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

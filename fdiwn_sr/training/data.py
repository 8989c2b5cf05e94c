"""Training patches and validation images.

Every random choice of a training sample (which image, where, which flip) is a
function of (seed, epoch, index), never of a process-global generator, so the
patch stream is the same for any number of DataLoader workers and a resumed run
draws exactly the patches the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..atomic import atomic_write_bytes
from ..images import IMAGE_SUFFIXES
from .imresize import imresize

__all__ = ["PatchDataset", "PatchSampler", "ValImage", "list_images", "load_validation", "pair_by_stem", "read_rgb"]

# LR pixels of context cut around a patch before degrading it: the x4 bicubic
# kernel reaches 2 LR pixels, so the inner patch equals the whole image's LR.
_MARGIN = 3


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: Path) -> np.ndarray:
    """H x W x 3 uint8 (grey, palette and alpha images are converted)."""
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def _image_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the header, or None (reported) if the file is not an image we can read."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, ValueError) as e:
        warnings.warn(f"skipping unreadable image {path}: {e}", stacklevel=3)
        return None


def pair_by_stem(hr_dir: str | Path, lr_dir: str | Path, scale: int) -> list[tuple[Path, Path]]:
    """Match HR and LR files by name; an LR name may carry DIV2K's ``x{scale}`` suffix."""
    suffix = re.compile(rf"x{scale}$", re.IGNORECASE)
    lr = {suffix.sub("", p.stem): p for p in list_images(lr_dir)}
    pairs = [(p, lr[p.stem]) for p in list_images(hr_dir) if p.stem in lr]
    if not pairs:
        raise ValueError(f"no images with matching names in {hr_dir} and {lr_dir}")
    return pairs


def _augment(lr: np.ndarray, hr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One of the eight flips / 90-degree rotations, the same for both."""
    flip_v, flip_h, transpose = rng.random(3) < 0.5
    for flip, axis in ((flip_v, 0), (flip_h, 1)):
        if flip:
            lr, hr = np.flip(lr, axis), np.flip(hr, axis)
    if transpose:
        lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
    return lr, hr


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


@dataclass(frozen=True)
class _Entry:
    hr: Path
    lr: Path | None
    lr_size: tuple[int, int]


class PatchDataset(Dataset):
    """Random aligned (LR, HR) patches as uint8 CHW tensors, keyed by ``(index, epoch)``
    (image ``index % len(self)``; the key also seeds the patch's position and flips).

    With only ``hr_dir`` the LR is MATLAB bicubic of the HR (cropped to a multiple
    of ``scale``), made per patch from a margin of context so that it equals the
    whole image's LR. With ``cache_dir`` each image is decoded and degraded once
    and then read by memory map. Unreadable and too-small images are reported
    and skipped.
    """

    def __init__(
        self,
        hr_dir: str | Path,
        scale: int,
        patch_size: int = 48,
        *,
        lr_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        self.scale, self.patch_size, self.augment, self.seed = scale, patch_size, augment, seed
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        pairs = pair_by_stem(hr_dir, lr_dir, scale) if lr_dir is not None else [(p, None) for p in list_images(hr_dir)]
        self.entries: list[_Entry] = []
        self.skipped: list[Path] = []
        for hr, lr in pairs:
            entry = self._entry(hr, lr)
            if entry is None:
                self.skipped.append(hr)
            else:
                self.entries.append(entry)
        if not self.entries:
            raise ValueError(f"no usable training images in {hr_dir} (need LR at least {patch_size} pixels a side)")

    def _entry(self, hr: Path, lr: Path | None) -> _Entry | None:
        s, p = self.scale, self.patch_size
        hr_size = _image_size(hr)
        if hr_size is None:
            return None
        if lr is None:
            lr_size = (hr_size[0] // s, hr_size[1] // s)
        else:
            lr_size = _image_size(lr)
            if lr_size is None:
                return None
            if lr_size[0] * s > hr_size[0] or lr_size[1] * s > hr_size[1]:
                warnings.warn(f"skipping {hr}: HR {hr_size} is smaller than x{s} its LR {lr_size}", stacklevel=3)
                return None
        if min(lr_size) < p:
            warnings.warn(f"skipping {hr}: its LR {lr_size} is smaller than the {p}-pixel patch", stacklevel=3)
            return None
        return _Entry(hr, lr, lr_size)

    def __len__(self) -> int:
        return len(self.entries)

    def _cached(self, entry: _Entry, kind: str) -> np.ndarray:
        """The whole image as a memory map, written on first use (atomically: workers may race)."""
        assert self.cache_dir is not None
        src = entry.lr if kind == "lr" and entry.lr is not None else entry.hr
        stat = src.stat()
        key = hashlib.sha1(f"{src.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        made = kind == "lr" and entry.lr is None
        path = self.cache_dir / f"{src.stem}-{key}-{kind}{f'x{self.scale}' if made else ''}.npy"
        if not path.is_file():
            img = read_rgb(src)
            if made:
                h, w = entry.lr_size
                img = imresize(img[: h * self.scale, : w * self.scale], 1 / self.scale)
            buf = io.BytesIO()
            np.save(buf, img)
            atomic_write_bytes(path, buf.getvalue())
        return np.load(path, mmap_mode="r")

    def _patch(self, entry: _Entry, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        s, p = self.scale, self.patch_size
        hr_box = (slice(y * s, (y + p) * s), slice(x * s, (x + p) * s))
        if self.cache_dir is not None:
            lr_map, hr_map = self._cached(entry, "lr"), self._cached(entry, "hr")
            return np.array(lr_map[y : y + p, x : x + p]), np.array(hr_map[hr_box])
        hr = read_rgb(entry.hr)
        if entry.lr is not None:
            return read_rgb(entry.lr)[y : y + p, x : x + p], hr[hr_box]
        # Degrade only the patch plus a margin; at the image's edges the margin
        # is cut where the image ends, which is where the whole-image LR clamps too.
        h, w = entry.lr_size
        y0, x0 = max(0, y - _MARGIN), max(0, x - _MARGIN)
        y1, x1 = min(h, y + p + _MARGIN), min(w, x + p + _MARGIN)
        lr = imresize(hr[y0 * s : y1 * s, x0 * s : x1 * s], 1 / s)
        return lr[y - y0 : y - y0 + p, x - x0 : x - x0 + p], hr[hr_box]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch = key
        rng = np.random.default_rng([self.seed, epoch, index])
        n = len(self.entries)
        for attempt in range(n):  # a file that fails to decode is reported and replaced by the next one
            entry = self.entries[(index + attempt) % n]
            h, w = entry.lr_size
            y = int(rng.integers(0, h - self.patch_size + 1))
            x = int(rng.integers(0, w - self.patch_size + 1))
            try:
                lr, hr = self._patch(entry, y, x)
                break
            except (OSError, ValueError) as e:
                warnings.warn(f"skipping unreadable image {entry.hr}: {e}", stacklevel=2)
        else:
            raise ValueError("none of the training images could be read")
        if self.augment:
            lr, hr = _augment(lr, hr, rng)
        return _chw(lr), _chw(hr)


class PatchSampler(Sampler):
    """Endless, resumable stream of ``(index, epoch)`` keys, sharded over processes.

    Each epoch is a :class:`~torch.utils.data.DistributedSampler` permutation of
    the images (repeated until every process gets at least one batch), cut to
    whole batches; starting at ``start_step`` skips exactly the batches already
    trained on.
    """

    def __init__(
        self,
        num_images: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_step: int = 0,
    ) -> None:
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.start_step = start_step
        self.length = num_images * math.ceil(batch_size * world_size / num_images)
        self.steps_per_epoch = self.length // world_size // batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = divmod(self.start_step, self.steps_per_epoch)
        while True:
            shard = DistributedSampler(
                range(self.length), num_replicas=self.world_size, rank=self.rank, seed=self.seed, drop_last=True
            )
            shard.set_epoch(epoch)
            indices = list(shard)[skip * self.batch_size : self.steps_per_epoch * self.batch_size]
            for i in indices:
                yield i, epoch
            epoch, skip = epoch + 1, 0


@dataclass(frozen=True)
class ValImage:
    name: str
    lr: np.ndarray
    hr: np.ndarray


def load_validation(hr_dir: str | Path, scale: int, lr_dir: str | Path | None = None) -> list[ValImage]:
    """Whole validation images: HR cropped to a multiple of ``scale``, LR given or MATLAB bicubic."""
    pairs = pair_by_stem(hr_dir, lr_dir, scale) if lr_dir is not None else [(p, None) for p in list_images(hr_dir)]
    images = []
    for hr_path, lr_path in pairs:
        try:
            hr = read_rgb(hr_path)
            lr = read_rgb(lr_path) if lr_path is not None else None
        except (OSError, ValueError) as e:
            warnings.warn(f"skipping unreadable validation image {hr_path}: {e}", stacklevel=2)
            continue
        h, w = hr.shape[0] // scale, hr.shape[1] // scale
        hr = hr[: h * scale, : w * scale]
        if lr is None:
            lr = imresize(hr, 1 / scale)
        elif lr.shape[:2] != (h, w):
            raise ValueError(
                f"{lr_path}: LR is {lr.shape[1]}x{lr.shape[0]}, expected {w}x{h} (x{scale} of {hr_path.name})"
            )
        images.append(ValImage(hr_path.stem, lr, hr))
    if not images:
        raise ValueError(f"no usable validation images in {hr_dir}")
    return images

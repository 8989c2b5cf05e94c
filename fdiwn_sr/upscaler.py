"""Upscaler: adapt input -> plan tiles -> run the network (inference form) -> adapt output."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import images, tiling
from .backends import make_runner
from .images import ImageLike
from .network import FDIWN
from .network.blocks import LOW_PRECISION


def default_device() -> torch.device:
    """The fastest device present: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device``, checked to exist here (None: :func:`default_device`); a typo or a missing GPU is a ValueError."""
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {str(device)!r} was asked for, but {why}; use 'cpu' or leave the device unset")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but MPS is not available here; use 'cpu'")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(device)!r} is not supported; use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return dev


class Upscaler:
    """A ready-to-run FDIWN: the folded network on its device, behind a backend.

    Holds no per-call state, so one instance can serve several threads.
    """

    def __init__(
        self,
        model: FDIWN,
        device: torch.device | str | None = None,
        *,
        dtype: torch.dtype | None = None,
        backend: str | None = None,
    ) -> None:
        self.device = resolve_device(device)
        if dtype not in (None, torch.float32, *LOW_PRECISION):
            raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype!r}")
        self.dtype: torch.dtype = dtype or torch.float32
        self.scale: int = model.scale
        self.variant: str = model.variant
        self._runner = make_runner(model, self.device, dtype, backend)
        self.backend: str = self._runner.name
        self.bytes_per_pixel: float = self._runner.bytes_per_pixel  # sizes automatic tiles
        self.model = model

    def __repr__(self) -> str:
        return (
            f"Upscaler(scale={self.scale}, variant={self.variant!r}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).removeprefix('torch.')}, backend={self.backend!r})"
        )

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on a (B, 3, H, W) float tensor in 0..255; returns float32 0..255 unclamped."""
        if self.dtype in LOW_PRECISION:
            with torch.autocast(self.device.type, dtype=self.dtype):
                return self._runner(x).float()
        return self._runner(x)

    def upscale(
        self,
        image: ImageLike | list[ImageLike],
        *,
        tile: int | None = None,
        tile_overlap: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> ImageLike | list[ImageLike]:
        """Upscale an image, or a list of them, and give each back in the form it came in.

        Accepts PIL images (any common mode; EXIF orientation applied), numpy
        arrays (H x W or H x W x C; uint8, uint16, float in [0, 1]), torch
        tensors (C x H x W or B x C x H x W, float in [0, 1], any device) and
        file paths (returned as PIL images). Same-size images in a list run
        as one batch. ``tile``: None picks a size from free memory, 0 runs the
        whole image at once, N uses N x N low-resolution tiles overlapping by
        ``tile_overlap`` pixels (default 16). ``batch_size`` caps the images
        or tiles per network call; ``progress`` shows a bar over the tiles.
        """
        options = {"tile": tile, "overlap": tile_overlap, "batch_size": batch_size, "progress": progress}
        tiling.check_options(tile, tile_overlap, batch_size)
        if not isinstance(image, (list, tuple)):
            x, spec = images.to_tensor(image)
            return images.from_tensor(self._upscale_tensor(x, **options), spec)
        if not image:
            raise ValueError("the list of images is empty")
        prepared = [images.to_tensor(im) for im in image]
        results: list[torch.Tensor | None] = [None] * len(prepared)
        groups: dict[tuple, list[int]] = {}
        for k, (x, spec) in enumerate(prepared):
            groups.setdefault((tuple(x.shape[1:]), x.device, spec.channels), []).append(k)
        for members in groups.values():
            y = self._upscale_tensor(torch.cat([prepared[k][0] for k in members]), **options)
            for k, part in zip(members, y.split([prepared[k][0].shape[0] for k in members]), strict=True):
                results[k] = part
        return [images.from_tensor(y, spec) for y, (_, spec) in zip(results, prepared, strict=True)]

    def _upscale_tensor(self, x: torch.Tensor, **options) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, C, sH, sW): colour through the network, alpha resized bicubically.

        Gray goes through as RGB and comes back as the mean of the three
        channels; alpha is a mask, not a picture the network was trained on,
        so it is resized with bicubic interpolation (clamped to [0, 1]).
        """
        c = x.shape[1]
        colour = x[:, :3] if c >= 3 else x[:, :1].expand(-1, 3, -1, -1)
        y = tiling.upscale_tiled(
            self._forward_unit, colour, self.scale, self.device, bytes_per_pixel=self.bytes_per_pixel, **options
        )
        if c < 3:
            y = y.mean(1, keepdim=True)
        if c in (2, 4):
            alpha = F.interpolate(x[:, c - 1 :], scale_factor=self.scale, mode="bicubic", align_corners=False)
            y = torch.cat([y, alpha.clamp_(0.0, 1.0)], 1)
        return y

    def _forward_unit(self, x: torch.Tensor) -> torch.Tensor:
        """forward_tensor on the [0, 1] range the image plumbing uses."""
        return self.forward_tensor(x.to(self.device) * 255.0) / 255.0

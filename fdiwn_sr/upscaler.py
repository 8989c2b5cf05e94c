"""Upscaler: adapt input -> plan tiles -> run the network (inference form) -> adapt output.

Every tensor on its public surface holds values in [0, 1]. The network itself
([`FDIWN`][fdiwn_sr.network.FDIWN], like the authors' code and the ONNX export)
works on 0..255; the scaling happens here, in ``Upscaler._run``, and nowhere
else.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import images, tiling
from .backends import Runner, make_runner
from .images import ImageLike
from .network import FDIWN
from .network.blocks import LOW_PRECISION

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "LOW_PRECISION",
    "PILInput",
    "PILInputs",
    "Result",
    "UpscaleOptions",
    "Upscaler",
    "default_device",
    "resolve_device",
]

_DTYPES = (torch.float32, *LOW_PRECISION)
# What upscale() takes and gives back, for its overloads: a PIL image for PIL images and paths, else the
# input's own kind; a list for a list. (A str is a path, so lists of paths are spelled out, not Sequence[str].)
PILInput = Image.Image | str | os.PathLike[str]
PILInputs = Sequence[Image.Image] | Sequence[os.PathLike[str]] | list[str] | tuple[str, ...]
Result = Image.Image | np.ndarray | torch.Tensor


class UpscaleOptions(TypedDict, total=False):
    """The keyword options of [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale] (documented there)."""

    tile: int | None
    tile_overlap: int | None
    batch_size: int | None
    progress: bool


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


@dataclass(frozen=True)
class _Placement:
    """Where and how the network runs; swapped as one object by :meth:`Upscaler.to`, so a call in
    flight on another thread sees the old placement or the new one, never half of each."""

    device: torch.device
    dtype: torch.dtype
    runner: Runner


class Upscaler:
    """A ready-to-run FDIWN: the network on its device and dtype, behind a backend.

    Holds no per-call state, so one instance can serve several threads.
    ``model`` is kept as given (the training or folded form, on the CPU) and is
    what [`to`][fdiwn_sr.Upscaler.to] rebuilds the backend from. Usually made by
    [`load_model`][fdiwn_sr.load_model].

    Args:
        model: The network, in its training or folded form.
        device: Where to run; None picks CUDA, then Apple's MPS, then the CPU.
        dtype: ``torch.float32`` (None), ``torch.float16`` or ``torch.bfloat16``.
        backend: ``"torch-fused"``, ``"onnxruntime"`` or ``"torch"``; None picks the fastest
            exact one for the device and dtype.

    Attributes:
        model: The network as given.
        scale: Upscaling factor of the network.
        variant: ``"fdiwn"`` or ``"fdiwn-m"``.

    Raises:
        ValueError: If the dtype is not one of the three, or the backend cannot run on the
            device and dtype.
    """

    def __init__(
        self,
        model: FDIWN,
        device: torch.device | str | None = None,
        *,
        dtype: torch.dtype | None = None,
        backend: str | None = None,
    ) -> None:
        self.model = model
        self.scale: int = model.scale
        self.variant: str = model.variant
        self._backend_request = backend
        self._placement = self._place(resolve_device(device), dtype)

    def _place(self, device: torch.device, dtype: torch.dtype | None) -> _Placement:
        if dtype not in (None, *_DTYPES):
            raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype!r}")
        runner = make_runner(self.model, device, dtype, self._backend_request)
        return _Placement(device, dtype or torch.float32, runner)

    @property
    def device(self) -> torch.device:
        """The device the network runs on."""
        return self._placement.device

    @property
    def dtype(self) -> torch.dtype:
        """The precision the network runs in (``torch.float32`` unless asked otherwise)."""
        return self._placement.dtype

    @property
    def backend(self) -> str:
        """The backend running the network: ``torch-fused``, ``onnxruntime`` or ``torch``."""
        return self._placement.runner.name

    @property
    def bytes_per_pixel(self) -> float:
        """Peak activation memory per low-resolution pixel of one forward pass: sizes automatic tiles."""
        return self._placement.runner.bytes_per_pixel

    def __repr__(self) -> str:
        return (
            f"Upscaler(scale={self.scale}, variant={self.variant!r}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).removeprefix('torch.')}, backend={self.backend!r})"
        )

    def to(self, device: torch.device | str | torch.dtype | None = None, dtype: torch.dtype | None = None) -> Upscaler:
        """Move to another device and/or dtype in place and return ``self``, like ``nn.Module.to``.

        The weights are not read again: the backend is rebuilt from ``model``
        in memory. ``to(torch.bfloat16)`` changes only the dtype. A backend named
        when this Upscaler was made is kept; otherwise the fastest one for the new
        placement is chosen.

        Args:
            device: The new device, or a dtype (as in ``to(torch.float16)``); None keeps the device.
            dtype: The new dtype; None keeps the dtype.

        Returns:
            This Upscaler.

        Raises:
            ValueError: If the dtype is not one of the three, or the backend named when this
                Upscaler was made cannot run there.
        """
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        target = resolve_device(device) if device is not None else self.device
        self._placement = self._place(target, dtype if dtype is not None else self.dtype)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network alone on a (B, 3, H, W) float tensor in [0, 1] on any device.

        No tiling, no input adaptation, no clamping: for images of any kind, size or
        channel count use [`upscale`][fdiwn_sr.Upscaler.upscale].

        Args:
            x: RGB in [0, 1], shape (B, 3, H, W), floating point, on any device.

        Returns:
            (B, 3, scale * H, scale * W) float32 on ``device``, in [0, 1] up to the
            network's overshoot (unclamped).

        Raises:
            ValueError: If ``x`` is not a (B, 3, H, W) floating-point tensor.
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"forward takes a (B, 3, H, W) float tensor in [0, 1], got {_describe(x)}")
        return self._run(self._placement, x)

    @staticmethod
    def _run(p: _Placement, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] in, [0, 1] out, on ``p``; the network and its backends compute in 0..255."""
        x = x.to(p.device) * 255.0
        if p.dtype in LOW_PRECISION:
            with torch.autocast(p.device.type, dtype=p.dtype):
                y = p.runner(x).float()
        else:
            y = p.runner(x)
        return y / 255.0

    @overload
    def upscale(self, image: PILInput, **options: Unpack[UpscaleOptions]) -> Image.Image: ...
    @overload
    def upscale(self, image: np.ndarray, **options: Unpack[UpscaleOptions]) -> np.ndarray: ...
    @overload
    def upscale(self, image: torch.Tensor, **options: Unpack[UpscaleOptions]) -> torch.Tensor: ...
    @overload
    def upscale(self, image: PILInputs, **options: Unpack[UpscaleOptions]) -> list[Image.Image]: ...
    @overload
    def upscale(self, image: Sequence[np.ndarray], **options: Unpack[UpscaleOptions]) -> list[np.ndarray]: ...
    @overload
    def upscale(self, image: Sequence[torch.Tensor], **options: Unpack[UpscaleOptions]) -> list[torch.Tensor]: ...
    @overload
    def upscale(self, image: list[Any] | tuple[Any, ...], **options: Unpack[UpscaleOptions]) -> list[Result]: ...
    def upscale(
        self,
        image: ImageLike | Sequence[ImageLike],
        *,
        tile: int | None = None,
        tile_overlap: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Result | list[Result]:
        """Upscale an image, or a list of them, and give each back in the form it came in.

        Accepts PIL images (any common mode; EXIF orientation applied), numpy
        arrays (H x W or H x W x C; uint8, uint16, float in [0, 1]), torch
        tensors (C x H x W or B x C x H x W, float in [0, 1], any device; the
        result is clamped to [0, 1], in the input's dtype and on its device)
        and file paths (returned as PIL images). Same-size images in a list run
        as one batch. The input and options are checked before the network runs
        (see [Upscaling images][upscaling-images] for every kind and mode).

        Args:
            image: The image, or a list of images of any kinds and sizes.
            tile: None picks a tile size from free memory (the whole image when it fits),
                0 runs the whole image at once, N uses N x N low-resolution tiles (N >= 16).
            tile_overlap: Least overlap of neighbouring tiles in low-resolution pixels
                (default 16, at most half the tile).
            batch_size: Most images or tiles per network call (default: as many as the
                memory budget holds).
            progress: Show a progress bar over the tiles.

        Returns:
            Each image upscaled, in the kind it came in (a PIL image for a path); a list
            for a list, in order.

        Raises:
            ValueError: For empty, NaN or out-of-range images, a wrong number of channels,
                unreadable or refused files, an empty list, bad options, or a request that
                cannot fit in memory.
            TypeError: For an unsupported input type or dtype.
            FileNotFoundError: If a path does not exist.
        """
        options = {"tile": tile, "overlap": tile_overlap, "batch_size": batch_size, "progress": progress}
        tiling.check_options(tile, tile_overlap, batch_size)
        p = self._placement  # one placement for the whole call, whatever to() does meanwhile
        if not _is_sequence(image):
            x, spec = images.to_tensor(image)
            return images.from_tensor(self._upscale_tensor(p, x, **options), spec)
        if not image:
            raise ValueError("the list of images is empty")
        prepared = [images.to_tensor(im) for im in image]
        results: list[torch.Tensor | None] = [None] * len(prepared)
        groups: dict[tuple, list[int]] = {}
        for k, (x, spec) in enumerate(prepared):
            groups.setdefault((tuple(x.shape[1:]), x.device, spec.channels), []).append(k)
        for members in groups.values():
            y = self._upscale_tensor(p, torch.cat([prepared[k][0] for k in members]), **options)
            for k, part in zip(members, y.split([prepared[k][0].shape[0] for k in members]), strict=True):
                results[k] = part
        return [images.from_tensor(y, spec) for y, (_, spec) in zip(results, prepared, strict=True)]

    def _upscale_tensor(self, p: _Placement, x: torch.Tensor, **options: Any) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, C, sH, sW): colour through the network, alpha resized bicubically.

        Gray goes through as RGB and comes back as the mean of the three
        channels; alpha is a mask, not a picture the network was trained on,
        so it is resized with bicubic interpolation (clamped to [0, 1]).
        """
        c = x.shape[1]
        colour = x[:, :3] if c >= 3 else x[:, :1].expand(-1, 3, -1, -1)
        forward = functools.partial(self._run, p)
        y = tiling.upscale_tiled(
            forward, colour, self.scale, p.device, bytes_per_pixel=p.runner.bytes_per_pixel, **options
        )
        if c < 3:
            y = y.mean(1, keepdim=True)
        if c in (2, 4):
            alpha = F.interpolate(x[:, c - 1 :], scale_factor=self.scale, mode="bicubic", align_corners=False)
            y = torch.cat([y, alpha.clamp_(0.0, 1.0)], 1)
        return y


def _is_sequence(image: object) -> bool:
    """A list, tuple or other sequence of images (a str is a path, not a sequence of them)."""
    return isinstance(image, Sequence) and not isinstance(image, (str, bytes))


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__module__}.{type(x).__name__}"

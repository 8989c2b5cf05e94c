"""Upscaler: adapt input -> run the network (inference form) -> adapt output."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .backends import make_runner
from .network import FDIWN


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
        self.device = torch.device(device or "cpu")
        self.scale: int = model.scale
        self.variant: str = model.variant
        self._runner = make_runner(model, self.device, dtype, backend)
        self.backend: str = self._runner.name
        self.model = model

    def __repr__(self) -> str:
        return (
            f"Upscaler(scale={self.scale}, variant={self.variant!r}, device={str(self.device)!r}, "
            f"backend={self.backend!r})"
        )

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on a (B, 3, H, W) float tensor in 0..255; returns 0..255 unclamped."""
        return self._runner(x)

    def upscale(self, image: Image.Image) -> Image.Image:
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image, got {type(image).__name__}")
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        y = self.forward_tensor(x)[0].clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(y, "RGB")

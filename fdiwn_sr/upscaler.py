"""Upscaler: adapt input -> run the network (inference form) -> adapt output."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .network import FDIWN


class Upscaler:
    """A ready-to-run FDIWN: the folded network on its device.

    Holds no per-call state, so one instance can serve several threads.
    """

    def __init__(self, model: FDIWN, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device or "cpu")
        self.model = model.fold().to(self.device)
        self.scale: int = model.scale
        self.variant: str = model.variant

    def __repr__(self) -> str:
        return f"Upscaler(scale={self.scale}, variant={self.variant!r}, device={str(self.device)!r})"

    @torch.inference_mode()
    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on a (B, 3, H, W) float tensor in 0..255; returns 0..255 unclamped."""
        return self.model(x.to(self.device, torch.float32))

    def upscale(self, image: Image.Image) -> Image.Image:
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image, got {type(image).__name__}")
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        y = self.forward_tensor(x)[0].clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(y, "RGB")

"""Inference backends: callables that map a (B, 3, H, W) float32 0..255 tensor to its upscaled output.

A runner holds no per-call state, so one can be shared by several threads.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .network import FDIWN


class Runner(Protocol):
    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class TorchRunner:
    """Eager PyTorch on the folded network."""

    name = "torch"

    def __init__(self, model: FDIWN, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.model = model.fold().to(device)
        self.device, self.dtype = device, dtype

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.device, torch.float32))


def make_runner(
    model: FDIWN, device: torch.device, dtype: torch.dtype | None = None, backend: str | None = None
) -> Runner:
    """The requested backend, or the fastest exact one available when ``backend`` is None."""
    if backend not in (None, "torch"):
        raise ValueError(f"unknown backend {backend!r}; available: ['torch']")
    return TorchRunner(model, device, dtype or torch.float32)

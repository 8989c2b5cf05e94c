"""Inference backends: callables that map a (B, 3, H, W) float32 0..255 tensor to its upscaled output.

A runner holds no per-call state, so one can be shared by several threads (a
CPU runner keeps heap memory for its calls, :class:`fdiwn_sr.allocator.HeapReserve`). A
runner never changes the model it is built from (it works on a folded copy),
so one network can back several runners: other devices, dtypes, backends.

- ``torch``: eager PyTorch on the folded network; any device and dtype.
- ``torch-fused``: the fused inference form (:mod:`fdiwn_sr.network.inference`)
  on oneDNN's fused CPU kernels (:mod:`fdiwn_sr.network.kernels`, chosen here,
  once); CPU, float32.
- ``onnxruntime``: the fused form exported to ONNX and run by ONNX Runtime on
  the CPU (optional extra ``fdiwn-sr[onnx]``); exporting takes seconds at start.

All three compute the same function to float rounding (``tests/test_backends.py``).
The default on CPU in float32 is ``torch-fused``, the fastest (``docs/performance.md``);
elsewhere ``torch``.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import torch

from . import allocator, tiling
from ._optional import require
from .network import FDIWN
from .network.inference import FusedFDIWN
from .network.kernels import ONEDNN, OneDNN

__all__ = ["BACKENDS", "Runner", "available", "make_runner"]

BACKENDS = ("torch", "torch-fused", "onnxruntime")


class Runner(Protocol):
    name: str
    bytes_per_pixel: float  # peak activation memory per low-resolution input pixel (float32), sizes tiles

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class TorchRunner:
    """Eager PyTorch on a folded copy of the network."""

    name = "torch"
    bytes_per_pixel = tiling.BYTES_PER_PIXEL

    def __init__(self, model: FDIWN, device: torch.device) -> None:
        self.model = model.folded_copy().to(device)
        self.device = device
        self.reserve = allocator.HeapReserve(tiling.CPU_BUDGET if device.type == "cpu" else 0)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.reserve.ensure(int(self.bytes_per_pixel * (x.numel() // 3)))
        return self.model(x.to(self.device, torch.float32))


class FusedRunner:
    """The fused inference form in eager PyTorch on oneDNN's CPU kernels."""

    name = "torch-fused"
    bytes_per_pixel = 3.5 * 1024  # measured 2.4-3.1 KiB (docs/performance.md)

    def __init__(self, model: FDIWN) -> None:
        self.model = FusedFDIWN(model, OneDNN()).eval()
        self.reserve = allocator.HeapReserve(tiling.CPU_BUDGET)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.reserve.ensure(int(self.bytes_per_pixel * (x.numel() // 3)))
        return self.model(x.to("cpu", torch.float32))


class OnnxRuntimeRunner:
    """The fused form exported to ONNX, run by ONNX Runtime's CPU provider with all graph optimisations."""

    name = "onnxruntime"
    bytes_per_pixel = 2 * 1024  # measured 1.7 KiB

    def __init__(self, model: FDIWN, threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnx", "the onnxruntime backend")

        from .onnx_export import INPUT, cached_onnx_bytes, cached_onnx_path

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.input = INPUT

        def session() -> ort.InferenceSession:  # the export is cached: only the first use of a network waits for it
            return ort.InferenceSession(cached_onnx_bytes(model), options, providers=["CPUExecutionProvider"])

        try:
            self.session = session()
        except Exception:  # onnxruntime's own error types: a damaged cached file, so export afresh
            cached_onnx_path(model).unlink(missing_ok=True)
            self.session = session()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: lr})[0])


def available(device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> list[str]:
    """Backends that can run on ``device`` with ``dtype`` here, fastest first."""
    device = torch.device(device)
    if device.type != "cpu" or dtype not in (None, torch.float32):
        return ["torch"]
    names = ["torch-fused"] if ONEDNN else []
    if importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None:
        names.append("onnxruntime")
    return [*names, "torch"]


def make_runner(
    model: FDIWN, device: torch.device, dtype: torch.dtype | None = None, backend: str | None = None
) -> Runner:
    """The requested backend, or the fastest exact one available when ``backend`` is None."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {list(BACKENDS)}")
    if backend == "onnxruntime":  # not installed: an ImportError naming the extra, not "cannot run here"
        for module in ("onnx", "onnxruntime"):
            require(module, "onnx", "the onnxruntime backend")
    device = torch.device(device)
    usable = available(device, dtype)
    name = backend or usable[0]
    if name not in usable:
        raise ValueError(
            f"backend {name!r} cannot run on {device} with dtype {dtype or torch.float32} here; usable: {usable}"
        )
    if device.type == "cpu":
        allocator.tune_if_wanted(own_process=False)  # only with FDIWN_SR_MALLOC_TUNING=1: malloc is the host's
    if name == "torch-fused":
        return FusedRunner(model)
    if name == "onnxruntime":
        return OnnxRuntimeRunner(model)
    return TorchRunner(model, device)

"""ONNX export of the fused inference form: weights folded, dynamic batch, height and width.

The graph takes ``lr``, a (B, 3, H, W) float32 tensor in 0..255, and gives ``sr``,
(B, 3, sH, sW) in the same range, unclamped: the network's own range, as in the
authors' code (:meth:`fdiwn_sr.Upscaler.forward` is the same function on [0, 1]).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from pathlib import Path

import torch

from ._optional import require
from .atomic import atomic_write_bytes
from .network import FDIWN
from .network.inference import FusedFDIWN

__all__ = ["DEFAULT_OPSET", "cached_onnx_bytes", "cached_onnx_path", "export_onnx", "onnx_bytes"]

INPUT, OUTPUT = "lr", "sr"
DEFAULT_OPSET = 17


def _onnx():
    return require("onnx", "onnx", "ONNX export")


def onnx_bytes(model: FDIWN, *, opset: int = DEFAULT_OPSET) -> bytes:
    """The serialised ONNX model of ``model``'s fused inference form (``model`` is not modified)."""
    if not isinstance(model, FDIWN):
        raise TypeError(f"expected an FDIWN, got {type(model).__name__}")
    if not 13 <= opset <= 20:
        raise ValueError(f"opset must be between 13 and 20, got {opset}")
    onnx = _onnx()
    from . import __version__

    fused = FusedFDIWN(model).cpu().float().eval()
    example = torch.rand(1, 3, 24, 20) * 255
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter (no extra packages needed) warns about itself
        # oneDNN spends milliseconds setting up each small convolution of the trace; the plain kernels do not.
        with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
            torch.onnx.export(
                fused,
                (example,),
                buf,
                dynamo=False,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={
                    INPUT: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT: {0: "batch", 2: "out_height", 3: "out_width"},
                },
                opset_version=opset,
                do_constant_folding=True,
            )
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name, proto.producer_version = "fdiwn-sr", __version__
    proto.doc_string = (
        f"FDIWN x{model.scale} ({model.variant}), fused inference form. "
        f"{INPUT}: (B, 3, H, W) float32 RGB in 0..255; {OUTPUT}: (B, 3, {model.scale}H, {model.scale}W), unclamped."
    )
    for key, value in {"scale": str(model.scale), "variant": model.variant, "value_range": "0..255"}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_onnx(model: FDIWN, path: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically: never a partial file); returns the path."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name such as fdiwn_x{model.scale}.onnx")
    atomic_write_bytes(path, onnx_bytes(model, opset=opset))
    return path


def cached_onnx_path(model: FDIWN, *, opset: int = DEFAULT_OPSET) -> Path:
    """Where the export of exactly this network (weights, versions, opset) is kept in the cache folder."""
    from . import __version__
    from .weights import default_cache_home

    h = hashlib.sha256(f"{__version__} {torch.__version__} {opset} {model.folded}".encode())
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return default_cache_home() / "onnx" / f"fdiwn_x{model.scale}_{model.variant}-{h.hexdigest()[:16]}.onnx"


def cached_onnx_bytes(model: FDIWN, *, opset: int = DEFAULT_OPSET) -> bytes:
    """:func:`onnx_bytes`, kept in the cache folder so that only the first use pays for the export."""
    path = cached_onnx_path(model, opset=opset)
    try:
        return path.read_bytes()
    except OSError:
        pass
    data = onnx_bytes(model, opset=opset)
    with contextlib.suppress(OSError):  # a read-only cache costs the export next time, nothing else
        atomic_write_bytes(path, data)
    return data

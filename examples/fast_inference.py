"""Which backend runs, how it compares with plain PyTorch, and the same network as an ONNX file.

    python examples/fast_inference.py [--weights FDIWNx4.pt] [--onnx fdiwn_x4.onnx]

Without --weights the pretrained weights are fetched once into the cache. The
ONNX part needs the optional extra: ``pip install 'fdiwn-sr[onnx]'``. The same
export from the shell: ``fdiwn-sr export-onnx fdiwn_x4.onnx --scale 4``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fdiwn_sr
from fdiwn_sr.onnx_export import export_onnx

SAMPLE = Path(__file__).resolve().parent / "data" / "sample.png"


def timed(upscaler: fdiwn_sr.Upscaler, image: Image.Image) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = upscaler.upscale(image)
    return np.asarray(result, dtype=np.int16), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="safetensors or the authors' FDIWNx4.pt (default: pretrained)")
    p.add_argument("--onnx", default="fdiwn_x4.onnx", help="where to write the ONNX file")
    args = p.parse_args()
    image = Image.open(SAMPLE).convert("RGB")

    # 1. The default backend is the fastest exact one for the device; Upscaler.backend says which.
    fast = fdiwn_sr.load_model(4, weights=args.weights, device="cpu")
    plain = fdiwn_sr.load_model(4, weights=args.weights, device="cpu", backend="torch")
    warm_up = image.crop((0, 0, 32, 32))  # first calls set kernels up
    fast.upscale(warm_up), plain.upscale(warm_up)
    (a, t_fast), (b, t_plain) = timed(fast, image), timed(plain, image)
    print(f"default backend: {fast.backend} {t_fast:.3f} s; plain PyTorch: {t_plain:.3f} s")
    print(f"8-bit outputs: max difference {np.abs(a - b).max()} level(s), {100 * (a != b).mean():.3f} % of values")

    # 2. Export: weights folded, any batch, height and width; input 'lr' is RGB in 0..255.
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed: pip install 'fdiwn-sr[onnx]'")
        return
    path = export_onnx(fast.model, args.onnx)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    y = session.run(None, {"lr": x.numpy()})[0]
    gap = np.abs(y - 255 * fast.forward(x / 255).numpy()).max()
    print(f"wrote {path}: output {tuple(y.shape)}, max |onnxruntime - {fast.backend}| = {gap:.1e}")


if __name__ == "__main__":
    main()

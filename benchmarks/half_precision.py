"""How far float16 and bfloat16 autocast move the output from float32: PSNR on Set5 butterfly x4.

    python benchmarks/half_precision.py [--reference DIR] [--device cpu]

Upscales the x4 LR butterfly with the authors' FDIWNx4.pt in float32, then under
each low precision, and prints the PSNR of each against the float32 output (on
[0, 1]). The figures quoted in docs/usage.md ("Devices and precision") come from it.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fdiwn_sr

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_ref = os.environ.get("FDIWN_SR_REFERENCE_DIR", ROOT.parent / "shared" / "reference")
    p.add_argument("--reference", type=Path, default=Path(default_ref), help="reference data folder")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    weights = args.reference / "upstream-checkpoints" / "FDIWNx4.pt"
    lr = Image.open(args.reference / "set5" / "x4" / "LR" / "butterfly.png").convert("RGB")
    x = np.asarray(lr, dtype=np.float32) / 255
    full = fdiwn_sr.load_model(4, weights=weights, device=args.device).upscale(x).astype(np.float64)
    print(f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.device}")
    for dtype in (torch.bfloat16, torch.float16):
        y = fdiwn_sr.load_model(4, weights=weights, device=args.device, dtype=dtype).upscale(x)
        mse = float(((y.astype(np.float64) - full) ** 2).mean())
        print(f"{str(dtype).removeprefix('torch.')}: {10 * np.log10(1 / mse):.1f} dB PSNR against float32")


if __name__ == "__main__":
    main()

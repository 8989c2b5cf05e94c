"""Load an FDIWN file through spandrel, as ComfyUI and chaiNNer do, and upscale the sample picture.

    pip install 'fdiwn-sr[spandrel]'
    python examples/spandrel_loader.py WEIGHTS [--output sample_up.png]

WEIGHTS is our safetensors or the authors' FDIWNx*.pt (any scale). The
descriptor takes and returns [0, 1] tensors shaped (B, 3, H, W), like every
spandrel model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from spandrel import ImageModelDescriptor, ModelLoader

import fdiwn_sr.spandrel

SAMPLE = Path(__file__).resolve().parent / "data" / "sample.png"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", help="our .safetensors or the authors' .pt")
    p.add_argument("--output", default="sample_up.png")
    args = p.parse_args()

    fdiwn_sr.spandrel.install()  # FDIWN joins spandrel's MAIN_REGISTRY (a second call does nothing)
    model = ModelLoader().load_from_file(args.weights)
    assert isinstance(model, ImageModelDescriptor)
    print(f"{model.architecture.name} x{model.scale} ({', '.join(model.tags)}), {type(model.model).__name__} module")

    rgb = np.asarray(Image.open(SAMPLE).convert("RGB"), dtype=np.float32) / 255
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]  # (1, 3, H, W) in [0, 1]
    y = model(x)  # (1, 3, sH, sW), clamped to [0, 1]
    out = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(out).save(args.output)
    print(f"{SAMPLE.name} {tuple(x.shape[-2:])} -> {args.output} {tuple(y.shape[-2:])}")


if __name__ == "__main__":
    main()

"""Convert an authors' FDIWN checkpoint to safetensors and score it on a benchmark set.

    python examples/convert_and_evaluate.py FDIWNx4.pt SET5_DIR --scale 4

SET5_DIR holds HR/ and LR/ folders with matching file names (LR made by
MATLAB's bicubic imresize, as in the paper).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import fdiwn_sr
from fdiwn_sr.checkpoints import convert
from fdiwn_sr.evaluate import evaluate_folder, format_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="the authors' FDIWNx{2,3,4}.pt")
    p.add_argument("dataset", type=Path, help="folder with HR/ and LR/")
    p.add_argument("--scale", type=int, default=4)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"fdiwn_x{args.scale}.safetensors"
        digest = convert(args.checkpoint, weights, scale=args.scale)
        print(f"converted {args.checkpoint.name} -> {weights.name} (sha256 {digest[:16]}...)")
        upscaler = fdiwn_sr.load_model(args.scale, weights=weights)
        result = evaluate_folder(upscaler, args.dataset / "HR", args.dataset / "LR")
    print(format_table(result))


if __name__ == "__main__":
    main()

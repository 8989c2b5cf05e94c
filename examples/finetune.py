"""Fine-tune pretrained FDIWN on your own images, then use the result like any released model.

Starts from the released weights (or a file you give), trains on random patches
of your HR images with LR made by MATLAB-compatible bicubic, validates before
and after, and loads the exported safetensors through ``load_model``::

    python examples/finetune.py --train-hr my_photos/ --val-hr my_val/ --scale 4 --steps 2000

The same run from the command line is ``fdiwn-sr train --init pretrained ...``;
``--weights`` takes an authors' ``.pt`` or one of our ``.safetensors`` instead.
"""

from __future__ import annotations

import argparse

from fdiwn_sr import load_model
from fdiwn_sr.training import resolve_config, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-hr", required=True, help="folder of your high-resolution images")
    p.add_argument("--val-hr", required=True, help="folder of held-out high-resolution images")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--weights", default="pretrained", help="starting weights (default: the released ones)")
    p.add_argument("--out", default="runs/finetune", help="run folder")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--patch-size", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-5, help="small: fine-tuning, not training from scratch")
    args = p.parse_args()

    config = resolve_config(
        scale=args.scale,
        init=args.weights,
        train_hr=args.train_hr,
        val_hr=args.val_hr,
        out_dir=args.out,
        steps=args.steps,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule="cosine",
        val_every=max(1, args.steps // 4),
        checkpoint_every=max(1, args.steps // 4),
        workers=0,
    )
    result = train(config, resume=True)  # rerunning the command continues where it stopped
    for record in result.validations:
        print(f"step {record['step']}: validation PSNR-Y {record['psnr_y']:.3f} dB, SSIM-Y {record['ssim_y']:.4f}")

    upscaler = load_model(args.scale, weights=result.best_weights or result.weights)
    print(f"exported {result.weights} (best: {result.best_weights}); loads as {upscaler}")


if __name__ == "__main__":
    main()

"""The ``fdiwn-sr`` command: parse, call the library, report. No logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub.errors import HfHubHTTPError

from . import __version__, checkpoints, load_model
from .errors import CheckpointError, WeightsError
from .evaluate import evaluate_folder, format_table
from .publish import publish
from .training import resolve_config, train
from .training.config import add_arguments as add_training_arguments
from .training.config import overrides_from_namespace
from .weights import download


def _cmd_convert(args: argparse.Namespace) -> int:
    digest = checkpoints.convert(args.input, args.output, scale=args.scale)
    print(f"wrote {args.output} (sha256 {digest})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    upscaler = load_model(args.scale, args.variant, weights=args.weights, device=args.device)
    result = evaluate_folder(upscaler, Path(args.hr), Path(args.lr), save_dir=args.save)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    scales = sorted(set(args.scale)) if args.scale else None
    paths = download(scales, args.variant, revision=args.revision, cache_dir=args.cache_dir, endpoint=args.endpoint)
    for scale, path in paths.items():
        print(f"x{scale}: {path}")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    where = publish(
        args.repo_id,
        source=args.source,
        dry_run=args.dry_run,
        revision=args.revision,
        endpoint=args.endpoint,
        variant=args.variant,
    )
    print(f"wrote {where}" if args.dry_run else f"published {where}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    config = resolve_config(args.config, **overrides_from_namespace(args))
    result = train(config, resume=args.resume)
    best = f", best validation PSNR-Y {result.best_psnr_y:.3f} dB" if result.best_psnr_y is not None else ""
    print(f"step {result.step}: weights {result.weights}{best}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fdiwn-sr", description="FDIWN lightweight super-resolution")
    p.add_argument("--version", action="version", version=f"fdiwn-sr {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert an authors' .pt checkpoint to safetensors")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--scale", type=int, choices=(2, 3, 4), help="expected scale (checked against the file)")
    c.set_defaults(func=_cmd_convert)

    e = sub.add_parser("evaluate", help="PSNR-Y / SSIM-Y on paired HR/LR folders (paper protocol)")
    e.add_argument("--hr", required=True, help="folder of high-resolution images")
    e.add_argument("--lr", required=True, help="folder of low-resolution images, same file names")
    e.add_argument("--scale", type=int, choices=(2, 3, 4), required=True)
    e.add_argument("--variant", default="fdiwn")
    e.add_argument("--weights", help="safetensors or authors' .pt (default: pretrained)")
    e.add_argument("--device")
    e.add_argument("--save", help="folder to write the 8-bit super-resolved images to")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=_cmd_evaluate)

    d = sub.add_parser("download", help="fill the weights cache ahead of time (for offline use)")
    d.add_argument("--scale", type=int, choices=(2, 3, 4), action="append", help="repeatable; default: all")
    d.add_argument("--variant", default="fdiwn")
    d.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    d.add_argument("--cache-dir", help="cache folder (default: FDIWN_SR_HOME or the user cache folder)")
    d.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    d.set_defaults(func=_cmd_download)

    u = sub.add_parser("publish", help="build the Hub repository of pretrained weights and upload it")
    u.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub (HF_ENDPOINT, HF_TOKEN apply)")
    u.add_argument("--source", help="folder with the authors' FDIWNx{2,3,4}.pt (default: download them)")
    u.add_argument("--dry-run", metavar="DIR", help="write the repository into DIR instead of uploading")
    u.add_argument("--revision", help="branch to commit to (default: main)")
    u.add_argument("--variant", default="fdiwn")
    u.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    u.set_defaults(func=_cmd_publish)

    t = sub.add_parser("train", help="train or fine-tune FDIWN (also under torchrun --nproc_per_node N)")
    t.add_argument("--config", help="TOML file of options (the names below, with underscores); flags override it")
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue the run folder's checkpoint if there is one, or the CHECKPOINT given",
    )
    add_training_arguments(t)
    t.set_defaults(func=_cmd_train)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CheckpointError, WeightsError, FileNotFoundError, ValueError, TypeError, HfHubHTTPError) as e:
        print(f"fdiwn-sr {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

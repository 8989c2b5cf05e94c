"""The ``fdiwn-sr`` command: parse, call the library, report. No logic of its own.

Evaluation, ONNX export, publishing and training are imported inside their
subcommands, so ``fdiwn-sr upscale`` loads only the inference core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from huggingface_hub.errors import HfHubHTTPError
from PIL import Image
from tqdm import tqdm

from . import __version__, allocator, batch, checkpoints, images, load_model, tiling
from .atomic import check_writable_folder, remove_stale_temporaries
from .errors import CheckpointError, WeightsError
from .training.config import add_arguments as add_training_arguments
from .training.config import overrides_from_namespace
from .upscaler import Upscaler
from .weights import download

__all__ = ["build_parser", "main"]

DEBUG_ENV = "FDIWN_SR_DEBUG"


class UsageError(ValueError):
    """The command line asks for something that cannot run (exit code 2)."""


def _cmd_convert(args: argparse.Namespace) -> int:
    digest = checkpoints.convert(args.input, args.output, scale=args.scale)
    print(f"wrote {args.output} (sha256 {digest})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_folder, format_table

    upscaler = load_model(args.scale, args.variant, weights=args.weights, device=args.device)
    result = evaluate_folder(upscaler, Path(args.hr), Path(args.lr), save_dir=args.save)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def _cmd_upscale(args: argparse.Namespace) -> int:
    """Check everything the user gave (options, device, inputs, output folder) before loading any weights."""
    worker = batch.Worker.from_env()  # one of several under torchrun, else alone
    device = worker.device(args.device)
    if args.half and device.type == "cpu":
        raise UsageError("--half needs a CUDA or MPS device; on the CPU leave it off")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    shard, shards = batch.parse_shard(args.shard) if args.shard else (0, 1)
    tiling.check_options(args.tile, args.tile_overlap, None)
    if args.max_pixels is not None and args.max_pixels < 1:
        raise UsageError(f"--max-pixels must be a positive number of pixels, got {args.max_pixels}")
    limit = args.max_pixels or images.max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None:  # ours is the limit that speaks; this process is the CLI's own
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS, limit)
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    out = Path(args.output)
    from .video import VIDEO_SUFFIXES

    to_file = out.suffix.lower()[1:] in images.OUTPUT_FORMATS or out.suffix.lower() in VIDEO_SUFFIXES
    found, unmatched = images.find_images(
        args.inputs, exclude=None if to_file else out, suffixes=images.IMAGE_SUFFIXES + VIDEO_SUFFIXES
    )
    if to_file and len(found) + len(unmatched) != 1:
        raise UsageError(f"-o {out} names one file but {len(found) + len(unmatched)} inputs were given; name a folder")
    _check_writable(out.parent if to_file else out)
    suffix = f"_x{args.scale}" if args.suffix is None else args.suffix
    # This process's share (all of it when alone): sorted paths, every N-th; images and videos apart.
    index, count = shard * worker.world + worker.rank, shards * worker.world
    all_videos = [(src, rel) for src, rel in found if src.suffix.lower() in VIDEO_SUFFIXES]  # handled by kind
    videos = sorted(all_videos, key=lambda video: str(video[0]))[index::count]
    stills = [job for job in found if job not in all_videos]
    jobs = batch.plan(stills, out if to_file else None, out, suffix=suffix, fmt=args.format)
    mine = batch.share(jobs, index, count)
    problems: list[str] = []

    def problem(line: str) -> None:
        problems.append(line)
        tqdm.write(f"error: {line}", file=sys.stderr)

    for item in unmatched if worker.rank == 0 else ():  # every rank sees them; rank 0 reports them
        problem(f"{item}: no such file, or no images in that folder or glob")
    todo: list[tuple[Path, Path]] = []
    skipped = 0
    for job in mine:
        if job.clash:
            problem(f"{job.src}: {job.clash}")
            continue
        remove_stale_temporaries(job.dst)
        if job.dst.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            with Image.open(job.src) as im, warnings.catch_warnings(record=True) as notes:
                warnings.simplefilter("always", images.PrecisionWarning)
                images.check_still_image(im, job.src, limit)
            for note in notes:
                tqdm.write(f"note: {note.message}", file=sys.stderr)
        except (OSError, ValueError, SyntaxError) as e:  # Pillow's errors for files it cannot identify
            problem(
                _about(job.src, e) if isinstance(e, ValueError) else f"{job.src}: cannot read image: {_one_line(e)}"
            )
            continue
        todo.append((job.src, job.dst))
    threads = args.threads or (worker.cpu_threads() if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)  # the CLI owns its process
    with _terminate_as_exit(), worker.group():
        upscaler = _load_upscaler(args, device) if todo or videos else None
        if videos:
            _upscale_videos(args, upscaler, videos, out if to_file else None, suffix, problem)
        written = _upscale_files(args, upscaler, todo, limit, problem, bars=worker.rank == 0) if todo else 0
        parts = worker.gather((written, skipped, len(mine), problems))
    written, skipped, total = (sum(part[k] for part in parts) for k in range(3))
    problems = [line for part in parts for line in part[3]]
    if worker.rank == 0 and (jobs or not all_videos):
        by = f" by {worker.world} processes" if worker.world > 1 else ""
        part = f" (share {shard}/{shards} of {len(jobs)})" if shards > 1 else ""
        kept = f"; {skipped} already there, kept (--overwrite redoes them)" if skipped else ""
        print(f"upscaled {written} of {total} image(s) x{args.scale} into {out}{by}{part}{kept}")
    if worker.rank == 0 and problems:
        print(f"{len(problems)} problem(s):", *problems, sep="\n  ", file=sys.stderr)
    return 1 if problems else 0


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM (a launcher stopping its workers, a scheduler's time limit) unwinds like Ctrl-C, so the
    atomic writes delete their temp files; the previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _upscale_videos(
    args: argparse.Namespace,
    upscaler: Upscaler,
    videos: list[tuple[Path, Path]],
    to_file: Path | None,
    suffix: str,
    problem: Callable,
) -> None:
    """Each video through upscale_video (sound, timing, rotation, colour kept); existing outputs kept."""
    from .video import upscale_video

    done = kept = 0
    for src, rel in videos:
        dst = to_file or Path(args.output) / rel.with_name(f"{rel.stem}{suffix}{rel.suffix}")
        remove_stale_temporaries(dst)
        if dst.exists() and not args.overwrite:
            kept += 1
            continue
        try:
            if dst.suffix.lower()[1:] in images.OUTPUT_FORMATS:
                raise UsageError(f"-o {dst} names an image file but {src.name} is a video")
            result = upscale_video(
                src,
                dst,
                upscaler=upscaler,
                codec=args.codec,
                crf=args.crf,
                pix_fmt=args.pix_fmt,
                tile=args.tile,
                tile_overlap=args.tile_overlap,
                overwrite=args.overwrite,
            )
            done += 1
            tqdm.write(f"{src}: {result.frames} frames, {result.width}x{result.height} {result.codec} -> {dst}")
        except Exception as e:  # one file's failure must not take the folder down
            if _debug(args):
                raise
            problem(_about(src, e))
    note = f"; {kept} already there, kept (--overwrite redoes them)" if kept else ""
    print(f"upscaled {done} of {len(videos)} video(s) x{args.scale} into {args.output}{note}")


def _load_upscaler(args: argparse.Namespace, device: torch.device) -> Upscaler:
    """The model, loaded once for every image and video of the run."""
    return load_model(
        args.scale, args.variant, weights=args.weights, device=device, dtype=torch.float16 if args.half else None
    )


def _upscale_files(
    args: argparse.Namespace,
    upscaler: Upscaler,
    todo: list[tuple[Path, Path]],
    limit: int,
    problem: Callable,
    *,
    bars: bool = True,
) -> int:
    """Upscale each (source, destination); a failing file is reported and skipped."""
    written = 0
    for src, dst in tqdm(todo, desc="images", unit="image", disable=len(todo) < 2 or not bars):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", images.PrecisionWarning)  # noted when the inputs were checked
                image = images.open_image(src, limit)
            result = upscaler.upscale(image, tile=args.tile, tile_overlap=args.tile_overlap, progress=bars)
            images.save_image(result, dst, args.format)
            written += 1
        except Exception as e:  # one file's failure, whatever it is, must not take the folder down
            if _debug(args):
                raise
            problem(_about(src, e))
    return written


def _about(src: Path, e: BaseException) -> str:
    """One line about one file: the error, led by the file's path unless it names it already."""
    line = _one_line(e)
    return line if str(src) in line else f"{src}: {line}"


def _check_writable(folder: Path) -> None:
    """Create the output folder and write a probe file there, so a bad -o fails before any image is upscaled."""
    try:
        check_writable_folder(folder)
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {folder}: {e.strerror or e}") from None


def _cmd_download(args: argparse.Namespace) -> int:
    scales = sorted(set(args.scale)) if args.scale else None
    paths = download(scales, args.variant, revision=args.revision, cache_dir=args.cache_dir, endpoint=args.endpoint)
    for scale, path in paths.items():
        print(f"x{scale}: {path}")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from .publish import publish

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
    from .training import resolve_config, train

    config = resolve_config(args.config, **overrides_from_namespace(args))
    result = train(config, resume=args.resume)
    best = f", best validation PSNR-Y {result.best_psnr_y:.3f} dB" if result.best_psnr_y is not None else ""
    print(f"step {result.step}: weights {result.weights}{best}")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from .onnx_export import DEFAULT_OPSET, export_onnx

    model = load_model(args.scale, args.variant, weights=args.weights, device="cpu", backend="torch").model
    try:
        path = export_onnx(model, args.output, opset=DEFAULT_OPSET if args.opset is None else args.opset)
    except ImportError as e:
        print(f"fdiwn-sr export-onnx: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): x{args.scale}, input 'lr' (B, 3, H, W) 0..255")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from . import demo  # Gradio only when serving

    weights = {}
    for item in args.weights or ():
        scale, sep, path = item.partition("=")
        if not sep or scale.lstrip("x") not in ("2", "3", "4"):
            raise ValueError(f"--weights takes SCALE=FILE (e.g. 2=fdiwn_x2.safetensors), got {item!r}")
        weights[int(scale.lstrip("x"))] = path
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stop request shuts down cleanly (temp files go)
    with contextlib.suppress(KeyboardInterrupt):
        demo.serve(
            args.host, args.port, weights=weights, device=args.device, variant=args.variant, max_size=args.max_size
        )
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

    up = sub.add_parser("upscale", help="upscale image and video files, folders (recursively) and globs")
    up.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders or globs")
    up.add_argument("-o", "--output", required=True, help="output folder, or a file name for a single input")
    up.add_argument("--scale", type=int, choices=(2, 3, 4), default=4)
    up.add_argument("--variant", default="fdiwn")
    up.add_argument("--weights", help="safetensors or authors' .pt (default: pretrained)")
    up.add_argument("--tile", type=int, help="low-resolution tile size; 0 = whole image (default: from free memory)")
    up.add_argument("--tile-overlap", type=int, help="pixels neighbouring tiles share (default: 16)")
    up.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the fastest present)")
    up.add_argument("--half", action="store_true", help="float16 on a GPU (global statistics stay float32)")
    up.add_argument("--format", choices=("png", "jpg", "webp"), help="default: the input's if png/jpg/webp, else png")
    up.add_argument("--suffix", help="appended to output file names (default: _x{scale})")
    up.add_argument("--overwrite", action="store_true", help="redo outputs that exist (default: keep them)")
    up.add_argument("--shard", metavar="K/N", help="do share K (from 0) of N of the inputs, e.g. a Slurm array task")
    up.add_argument("--threads", type=int, help="CPU threads (default: torch's; torchrun ranks split the cores)")
    up.add_argument(
        "--max-pixels",
        type=int,
        help=f"largest input in pixels (default: {images.MAX_PIXELS_ENV} or {images.MAX_PIXELS:,}); guards memory",
    )
    up.add_argument("--codec", help="videos: FFmpeg video encoder (default: libx264; ffv1 in .mkv is lossless)")
    up.add_argument("--crf", type=int, help="videos: x264/x265/VP9 quality, lower is better (default: 14)")
    up.add_argument("--pix-fmt", help="videos: encoder pixel format, e.g. yuv444p (default: the input's)")
    up.set_defaults(func=_cmd_upscale)

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

    x = sub.add_parser("export-onnx", help="write the network as ONNX (weights folded, any batch/height/width)")
    x.add_argument("output", help="the .onnx file to write")
    x.add_argument("--scale", type=int, choices=(2, 3, 4), default=4)
    x.add_argument("--variant", default="fdiwn")
    x.add_argument("--weights", help="safetensors or authors' .pt (default: pretrained)")
    x.add_argument("--opset", type=int, help="ONNX opset, 13..20 (default: fdiwn_sr.onnx_export.DEFAULT_OPSET)")
    x.set_defaults(func=_cmd_export_onnx)

    s = sub.add_parser("serve", help="a web page to try it: upload, before/after slider, download (fdiwn-sr[demo])")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, help="port (default: GRADIO_SERVER_PORT, or the first free from 7860)")
    s.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the fastest present)")
    s.add_argument("--variant", default="fdiwn")
    s.add_argument("--weights", action="append", metavar="SCALE=FILE", help="weights for a scale; repeatable")
    s.add_argument(
        "--max-size", type=_size, default="2048x2048", metavar="WxH", help="largest input accepted (default 2048x2048)"
    )
    s.set_defaults(func=_cmd_serve)
    p.add_argument("--debug", action="store_true", help=f"show tracebacks (also {DEBUG_ENV}=1)")
    for command in sub.choices.values():  # also after the command name; SUPPRESS keeps the top-level value
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def _one_line(e: BaseException) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def explain(e: Exception) -> tuple[int, list[str]]:
    """Exit code and the one or two lines the user sees for an error that ended a command.

    2: the request itself is wrong (options, paths, a weights file of the wrong
    kind); 1: something failed on the way (weights not obtainable, a disk
    error, a bug). Weights errors give the command line's fixes.
    """
    if isinstance(e, WeightsError):
        return 1, [_one_line(e.cause if e.cause else e), f"fix: {e.cli_fix}"] if e.cli_fix else [_one_line(e)]
    if isinstance(e, (UsageError, CheckpointError, FileNotFoundError, ValueError, TypeError)):
        return 2, [_one_line(e)]
    if isinstance(e, (OSError, HfHubHTTPError)):
        return 1, [_one_line(e)]
    return 1, [f"unexpected {type(e).__name__}: {_one_line(e)} (set {DEBUG_ENV}=1 or pass --debug for the traceback)"]


def _size(text: str) -> tuple[int, int]:
    from .demo import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; every failure ends in a line or two on stderr and an exit code, Ctrl-C in 130."""
    args = build_parser().parse_args(argv)
    allocator.tune_if_wanted(own_process=True)  # the command owns its process (FDIWN_SR_MALLOC_TUNING=0: not)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"fdiwn-sr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if _debug(args):
            raise
        code, lines = explain(e)
        print(f"fdiwn-sr {args.command}: error: {lines[0]}", *lines[1:], sep="\n  ", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())

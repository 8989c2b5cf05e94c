"""Ray Data: upscale a dataset of images on a Ray cluster, one model per actor (``pip install 'fdiwn-sr[ray]'``).

[`Upscale`][fdiwn_sr.ray.Upscale] is a callable class for ``ray.data.Dataset.map_batches``
over the batches ``ray.data.read_images`` makes; [`upscale_dataset`][fdiwn_sr.ray.upscale_dataset]
reads files, upscales them and writes the results as ``fdiwn-sr upscale`` does
(same output names, existing outputs skipped, bad files reported rather than
fatal). Ray is imported only when these are used.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import batch, images, load_model
from ._optional import require
from .upscaler import UpscaleOptions

__all__ = ["Upscale", "UpscaleFiles", "UpscaleResult", "upscale_dataset"]

# Read off the API they pass through to, so a new option reaches the actors; progress bars stay with the driver.
_UPSCALE_OPTIONS = tuple(k for k in UpscaleOptions.__annotations__ if k != "progress")
_LOAD_OPTIONS = tuple(
    p.name for p in inspect.signature(load_model).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
)


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(load_model's options, Upscaler.upscale's options); anything else is a TypeError naming it."""
    unknown = sorted(set(options) - set(_UPSCALE_OPTIONS) - set(_LOAD_OPTIONS))
    if unknown:
        known = ", ".join(_LOAD_OPTIONS + _UPSCALE_OPTIONS)
        raise TypeError(f"unexpected option(s) {', '.join(unknown)}; expected load_model's or upscale's: {known}")
    return (
        {k: v for k, v in options.items() if k in _LOAD_OPTIONS},
        {k: v for k, v in options.items() if k in _UPSCALE_OPTIONS},
    )


class _Actor:
    """Loads the model once, in the actor: weights resolved through the cache (shared, locked) on its node."""

    def __init__(self, scale: int, variant: str, threads: int | None, options: dict[str, Any]) -> None:
        load, self.options = _split_options(options)
        if threads:
            torch.set_num_threads(threads)  # the actor's process is ours; Ray reserved these cores for it
        self.upscaler = load_model(scale, variant, **load)


class Upscale(_Actor):
    """For ``read_images`` output: ``ds.map_batches(Upscale, fn_constructor_kwargs={"scale": 4}, compute=pool)``.

    Takes batches with an ``image`` column (a (B, H, W[, C]) array, or an
    object array of arrays when sizes or modes differ) and an optional ``path``
    column; returns the upscaled images (same dtype and channels: uint8 or
    uint16, gray, gray + alpha, RGB, RGBA) with their paths. Same-size images
    run as one batch. Note that ``read_images`` reads palette images
    as raw indices unless given ``mode="RGBA"``, and ignores EXIF orientation;
    [`upscale_dataset`][fdiwn_sr.ray.upscale_dataset] reads files the way
    [`fdiwn_sr.upscale`][fdiwn_sr.upscale] does.

    Args:
        scale: Upscaling factor: 2, 3 or 4.
        variant: ``"fdiwn"`` or ``"fdiwn-m"``.
        threads: Torch threads in the actor (None leaves torch's default).
        **options: [`load_model`][fdiwn_sr.load_model]'s (``weights``, ``device``, ...) and
            [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale]'s (``tile``, ``tile_overlap``,
            ``batch_size``).

    Raises:
        TypeError: If an option is neither [`load_model`][fdiwn_sr.load_model]'s nor
            [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale]'s.
    """

    def __init__(self, scale: int = 4, variant: str = "fdiwn", *, threads: int | None = None, **options: Any) -> None:
        super().__init__(scale, variant, threads, options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Upscale one batch of ``read_images`` rows.

        Args:
            batch: An ``image`` column and optionally a ``path`` column.

        Returns:
            The ``image`` column upscaled (same dtype and channels) and the ``path`` column as given.

        Raises:
            ValueError: If an image cannot be upscaled (its path is named).
            TypeError: If an image has an unsupported type or dtype.
        """
        arrays = [_as_image_array(a) for a in batch["image"]]
        paths = list(batch["path"]) if "path" in batch else [None] * len(arrays)
        try:
            out = self.upscaler.upscale(arrays, **self.options) if arrays else []
        except (ValueError, TypeError) as e:
            for a, path in zip(arrays, paths, strict=True):  # name the image at fault
                try:
                    images.to_tensor(a)
                except (ValueError, TypeError) as bad:
                    raise type(bad)(f"{path or 'an image of the batch'}: {bad}") from e
            raise
        result: dict[str, Any] = {"image": _column(batch["image"], out)}
        if "path" in batch:
            result["path"] = batch["path"]
        return result


class UpscaleFiles(_Actor):
    """The actor behind [`upscale_dataset`][fdiwn_sr.ray.upscale_dataset]: rows of files in, rows of results out.

    Reads each file with ``fdiwn_sr.images.open_image`` (every mode, 16-bit,
    alpha, EXIF orientation, ICC profile kept), writes atomically, skips an
    existing output unless ``overwrite``; an unreadable file becomes a row with
    status ``error`` and the reason, never an exception.

    Args:
        scale: Upscaling factor: 2, 3 or 4.
        variant: ``"fdiwn"`` or ``"fdiwn-m"``.
        threads: Torch threads in the actor (None leaves torch's default).
        fmt: Output format (``png``, ``jpg``, ``webp``); None keeps the input's where it can.
        overwrite: Redo outputs that exist.
        **options: [`load_model`][fdiwn_sr.load_model]'s and
            [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale]'s options.

    Raises:
        TypeError: If an option is neither [`load_model`][fdiwn_sr.load_model]'s nor
            [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale]'s.
    """

    def __init__(
        self,
        scale: int = 4,
        variant: str = "fdiwn",
        *,
        threads: int | None = None,
        fmt: str | None = None,
        overwrite: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(scale, variant, threads, options)
        self.fmt, self.overwrite = fmt, overwrite

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, Any]:
        """Upscale the files of a batch of rows.

        Args:
            rows: Columns ``path``, ``output`` and ``clash`` (as ``upscale_dataset`` plans them).

        Returns:
            Columns ``path``, ``output``, ``status`` (``written``, ``skipped`` or ``error``) and
            ``error`` (the reason, or empty).
        """
        status: list[str] = []
        errors: list[str] = []
        for src, dst, clash in zip(rows["path"], rows["output"], rows["clash"], strict=True):
            job = batch.Job(Path(src), Path(dst), str(clash) or None)
            try:
                status.append(batch.run_job(self.upscaler, job, fmt=self.fmt, overwrite=self.overwrite, **self.options))
                errors.append("")
            except (ValueError, OSError) as e:
                status.append("error")
                errors.append(str(e))
        return {"path": rows["path"], "output": rows["output"], "status": np.array(status), "error": np.array(errors)}


@dataclass
class UpscaleResult:
    """What [`upscale_dataset`][fdiwn_sr.ray.upscale_dataset] did.

    Args:
        written: Outputs written.
        skipped: Outputs that existed and were kept.
        errors: The errors record: one ``{"path": ..., "reason": ...}`` per file that could not be
            read, decoded or written.
        unmatched: Inputs (globs, folders) that matched no image.
    """

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def upscale_dataset(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    scale: int = 4,
    variant: str = "fdiwn",
    *,
    concurrency: int | None = None,
    threads: int | None = None,
    num_gpus: float | None = None,
    rows_per_batch: int = 16,
    suffix: str | None = None,
    format: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> UpscaleResult:
    """Upscale image files (paths, folders, globs) on the Ray cluster into ``output_dir``, as the CLI names them.

    Connects to the running cluster (or starts a local one) through
    ``ray.data``. On a cluster with GPUs each actor gets ``num_gpus`` (default
    1) and there is one actor per GPU; on CPUs each actor gets ``threads``
    cores (default: 4, at most the cluster's) and torch that many threads, so
    that ``concurrency`` actors (default: as many as the cores hold) never
    oversubscribe a node. Outputs that exist are skipped unless ``overwrite``;
    files that cannot be read or decoded end up in ``errors``.

    Args:
        inputs: Image files, folders (searched recursively) and globs, or one of them.
        output_dir: The output folder (on storage every node sees); outputs keep their paths
            relative to the folder they were found in, as with ``fdiwn-sr upscale``.
        scale: Upscaling factor: 2, 3 or 4.
        variant: ``"fdiwn"`` or ``"fdiwn-m"``.
        concurrency: Number of actors (default: one per GPU, or as many as the CPUs hold).
        threads: CPUs reserved per actor on CPU nodes, and its torch threads (default 4, at
            most the cluster's).
        num_gpus: GPUs per actor (default 1 where the cluster has GPUs, else 0).
        rows_per_batch: Files per actor call at most; a small folder is cut finer, so
            that every actor gets a share (12 files on 2 actors: 6 calls of 2).
        suffix: Added to each output's name before the extension (default ``_x{scale}``).
        format: Output format (``png``, ``jpg``, ``webp``); None keeps the input's where it can.
        overwrite: Redo outputs that exist.
        **options: [`load_model`][fdiwn_sr.load_model]'s (``weights``, ``cache_dir``, ...) and
            [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale]'s (``tile``, ...).

    Returns:
        Outputs written and skipped, the errors record, and inputs that matched nothing.

    Raises:
        ValueError: If ``output_dir`` looks like a file name, or ``rows_per_batch`` is below 1.
        TypeError: If an option is neither [`load_model`][fdiwn_sr.load_model]'s nor
            [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale]'s.
        ImportError: If the ``ray`` extra is not installed.
    """
    ray = require("ray", "ray", "fdiwn_sr.ray")
    require("ray.data", "ray", "fdiwn_sr.ray")
    _split_options(options)  # unknown options fail here, not in an actor
    if rows_per_batch < 1:
        raise ValueError(f"rows_per_batch must be at least 1, got {rows_per_batch}")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if Path(output_dir).suffix.lower()[1:] in images.OUTPUT_FORMATS:
        raise ValueError(f"output_dir {output_dir} looks like a file name; name a folder")
    found, unmatched = images.find_images(inputs, exclude=output_dir)
    jobs = batch.plan(found, None, output_dir, suffix=f"_x{scale}" if suffix is None else suffix, fmt=format)
    result = UpscaleResult(unmatched=unmatched)
    if not jobs:
        return result
    if not ray.is_initialized():
        ray.init()
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0) if options.get("device") in (None, "cuda") else 0
    if num_gpus is None:
        num_gpus = 1 if gpus else 0
    if num_gpus:
        cpus_per_actor = 1  # decoding and encoding; the GPU does the network
        concurrency = concurrency or max(1, int(gpus // num_gpus))
    else:
        cpus = int(resources.get("CPU", 1))
        cpus_per_actor = threads or min(4, cpus)
        concurrency = concurrency or max(1, cpus // cpus_per_actor)
    rows = [{"path": str(j.src), "output": str(j.dst), "clash": j.clash or ""} for j in jobs]
    blocks = min(len(rows), concurrency * 4)
    # A batch never spans more than a block's rows: one batch of a whole small folder would keep one actor busy
    # and leave the others idle.
    rows_per_batch = min(rows_per_batch, -(-len(rows) // blocks))
    ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        UpscaleFiles,
        fn_constructor_kwargs={
            "scale": scale,
            "variant": variant,
            "threads": None if num_gpus else cpus_per_actor,
            "fmt": format,
            "overwrite": overwrite,
            **options,
        },
        batch_size=rows_per_batch,
        compute=ray.data.ActorPoolStrategy(size=min(concurrency, len(rows))),
        num_cpus=cpus_per_actor,
        num_gpus=num_gpus,
    )
    for row in ds.iter_rows():
        if row["status"] == "written":
            result.written.append(row["output"])
        elif row["status"] == "skipped":
            result.skipped.append(row["output"])
        else:
            result.errors.append({"path": row["path"], "reason": row["error"]})
    return result


def _as_image_array(a: Any) -> np.ndarray:
    """An image as read_images hands it over, in the H x W (x C) layout upscale() takes.

    Where a block mixes gray (H x W) and colour (H x W x C) images, Ray pads
    the gray ones to 1 x H x W; those are read as H x W (unambiguous when W > 4,
    as a colour image has at most 4 channels). 32-bit integer pixels (Pillow's
    mode I, holding 16-bit data) become uint16.
    """
    a = np.asarray(a)
    if _padded_gray(a):
        a = a[0]
    if a.dtype == np.int32 and a.size and a.min() >= 0 and a.max() <= 65535:
        return a.astype(np.uint16)
    return a


def _padded_gray(a: np.ndarray) -> bool:
    return a.ndim == 3 and a.shape[0] == 1 and a.shape[2] > 4


def _column(inputs: Sequence[Any], outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The outputs in the layout their inputs came in (a padded gray image padded again), for Ray to
    store as one tensor column, ragged where sizes differ."""
    return [y[None] if _padded_gray(np.asarray(x)) else y for x, y in zip(inputs, outputs, strict=True)]

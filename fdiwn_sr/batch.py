"""Many files, many workers: output names, disjoint shares, resumable writes.

One module for every engine (the CLI in one process, its torchrun ranks and
``--shard`` tasks, :mod:`fdiwn_sr.ray`), so they all name outputs the same way
and all treat an existing output as done. Writes are atomic (temp file +
rename), so an output that exists is a complete one and a rerun can skip it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch

from . import images
from .atomic import remove_stale_temporaries
from .upscaler import Upscaler, resolve_device

__all__ = ["Job", "Worker", "parse_shard", "plan", "run_job", "share"]


@dataclass(frozen=True)
class Job:
    """One input file and the output it is written to; ``clash`` says why it must not be written."""

    src: Path
    dst: Path
    clash: str | None = None


def plan(
    found: Sequence[tuple[Path, Path]],
    to_file: Path | None,
    folder: str | os.PathLike[str],
    *,
    suffix: str,
    fmt: str | None = None,
) -> list[Job]:
    """The job of each (file, path relative to its input folder) pair that :func:`images.find_images` found.

    The output is ``to_file`` when the user named one, else ``folder`` with the
    input folders' layout mirrored, named ``{stem}{suffix}.{ext}`` (ext the
    input's if png/jpg/webp, else png, unless ``fmt``). A second input that
    would land on an output already taken gets a ``clash``.
    """
    jobs: list[Job] = []
    taken: set[Path] = set()
    for src, rel in found:
        ext = fmt or (src.suffix.lower()[1:] if src.suffix.lower()[1:] in images.OUTPUT_FORMATS else "png")
        dst = to_file or Path(folder) / rel.with_name(f"{rel.stem}{suffix}.{ext}")
        jobs.append(Job(src, dst, f"another input is also written to {dst}" if dst in taken else None))
        taken.add(dst)
    return jobs


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N): share K (counted from 0) of N, e.g. ``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes K/N (share K of N, K counted from 0), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text}: need N >= 1 and 0 <= K < N (K counts from 0)")
    return k, n


def share(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Share ``index`` of ``count``: every count-th job in source-path order, so shares are disjoint,
    cover every job, differ in size by at most one and come out the same on every worker."""
    return sorted(jobs, key=lambda job: str(job.src))[index::count]


def run_job(
    upscaler: Upscaler, job: Job, *, fmt: str | None = None, overwrite: bool = False, **options: Any
) -> Literal["written", "skipped"]:
    """Upscale ``job.src`` into ``job.dst`` unless it exists (and ``overwrite`` is off).

    ``options`` are :meth:`Upscaler.upscale`'s. Bad input raises ValueError or
    OSError naming the file; nothing partial is left at ``job.dst`` whatever happens.
    """
    if job.clash:
        raise ValueError(job.clash)
    remove_stale_temporaries(job.dst)
    if job.dst.exists() and not overwrite:
        return "skipped"
    result = upscaler.upscale(images.open_image(job.src), **options)
    images.save_image(result, job.dst, fmt)
    return "written"


@dataclass(frozen=True)
class Worker:
    """Where this process stands among the processes of one job, as a launcher such as torchrun describes it."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> Worker:
        """Read torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE; a lone process without them."""
        env = os.environ
        world = int(env.get("WORLD_SIZE", 1))
        return cls(
            rank=int(env.get("RANK", 0)),
            world=world,
            local_rank=int(env.get("LOCAL_RANK", 0)),
            local_world=int(env.get("LOCAL_WORLD_SIZE", world)),
        )

    def device(self, requested: str | None) -> torch.device:
        """The requested device (default: the fastest present), one GPU per rank: ``cuda`` means cuda:LOCAL_RANK."""
        device = resolve_device(requested)
        if device.type == "cuda" and device.index is None and self.world > 1:
            device = torch.device("cuda", self.local_rank)
        return device

    def cpu_threads(self) -> int | None:
        """Threads for one of ``local_world`` CPU workers on this machine: an even split of its cores, so that
        together they fill them without oversubscribing (torchrun's own default is 1 thread per worker).
        None for a lone worker: torch's default (all cores, or OMP_NUM_THREADS) is right for it."""
        if self.local_world == 1:
            return None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.local_world)

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """A gloo process group over the ranks for the duration (none for a lone process).

        gloo works on every device, and the group only carries the final
        summary. Its timeout is long because the last rank may finish hours after the first.
        """
        if self.world == 1:
            yield
            return
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=timedelta(days=7))
        try:
            yield
        finally:
            dist.destroy_process_group()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank (inside :meth:`group`)."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

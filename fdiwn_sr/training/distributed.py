"""Process-group plumbing for ``torchrun``: the same entry point runs alone or as one of N.

Under ``torchrun --nproc_per_node N`` the environment names this process's rank;
we join the group (NCCL on CUDA, gloo on CPU), pick the local device, and let
only rank 0 write files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["DistContext", "barrier", "mean_across", "setup", "teardown"]

# Rank 0 validates while the others wait in the next gradient all-reduce.
_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # we created the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(device: str | None = None) -> DistContext:
    """Join the process group ``torchrun`` describes (if any) and choose this process's device."""
    world = dist.get_world_size() if dist.is_initialized() else _env_int("WORLD_SIZE", 1)
    rank = dist.get_rank() if dist.is_initialized() else _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    try:
        dev = torch.device(device) if device is not None else None
    except RuntimeError as e:
        raise ValueError(f"not a torch device: {device!r}") from e
    if dev is None:
        dev = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    elif dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    elif dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=_TIMEOUT)
        owns = True
    return DistContext(rank, world, local_rank, dev, owns)


def mean_across(value: torch.Tensor, ctx: DistContext) -> float:
    """The mean of a scalar over all processes (every process must call this at the same step)."""
    if ctx.distributed:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= ctx.world_size
    return float(value)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()

"""Host memory reuse: glibc's malloc told to keep freed tensor memory instead of handing it back to the kernel.

glibc serves every large block (a feature map of a few megabytes) with a fresh
``mmap`` and returns it with ``munmap`` when freed, so each of the thousands of
tensors a forward pass creates is faulted in page by page and zeroed by the
kernel again: at x2 on a 1280x720 output about 600,000 page faults and a quarter
of the run time (``docs/performance.md``). Raising glibc's mmap and trim
thresholds keeps that memory in the heap for the next tensor, as the
jemalloc/tcmalloc preload of PyTorch's CPU tuning guide would.

The setting is process-wide, so a library must not make it behind its host's
back: importing fdiwn_sr, ``load_model()`` and ``upscale()`` leave malloc alone.
It is made where we own the process (the ``fdiwn-sr`` command, the benchmarks),
when a program asks for it with :func:`keep_freed_memory`, or when
``FDIWN_SR_MALLOC_TUNING=1`` asks for it whenever a CPU backend is built.
``FDIWN_SR_MALLOC_TUNING=0`` turns it off everywhere, the command included, and
a malloc setting of the user's own (``MALLOC_*`` variables, ``glibc.malloc``
tunables in ``GLIBC_TUNABLES``) is never overridden.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

__all__ = ["ENV", "glibc", "keep_freed_memory", "tune_if_wanted", "user_malloc_setting"]

ENV = "FDIWN_SR_MALLOC_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's malloc.h
THRESHOLD = 1 << 30  # blocks below this come from the heap; free heap memory above it goes back to the kernel
# glibc before 2.26 refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit): the fallback.
OLD_GLIBC_MMAP_MAX = 32 << 20


def glibc() -> ctypes.CDLL | None:
    """The C library where it is glibc (Linux, not musl), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (not musl)
        return libc
    except (OSError, AttributeError):
        return None


def _choice() -> bool | None:
    """FDIWN_SR_MALLOC_TUNING as True (tune), False (never), or None (unset: only where we own the process)."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return None


def user_malloc_setting() -> str | None:
    """The user's own malloc setting for this process, if any (it is theirs: we never override it)."""
    for name in sorted(os.environ):
        if name.startswith("MALLOC_"):
            return name
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc for large, short-lived tensors (once per process); whether anything was tuned.

    The documented opt-in for programs that embed fdiwn-sr (1.05-1.26x on the
    CPU backends, ``docs/performance.md``). A no-op (False) off Linux/glibc,
    with ``FDIWN_SR_MALLOC_TUNING=0``, or when the user set malloc up
    themselves. Each threshold is set and checked on its own: a glibc that
    refuses a 1 GiB mmap threshold gets the largest it accepts, and the trim
    threshold is raised either way.
    """
    if _choice() is False or user_malloc_setting() is not None:
        return False
    libc = glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mmap = libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD) == 1
    if not mmap:
        mmap = libc.mallopt(_M_MMAP_THRESHOLD, OLD_GLIBC_MMAP_MAX) == 1
    trim = libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD) == 1
    return mmap or trim


def tune_if_wanted(*, own_process: bool) -> bool:
    """:func:`keep_freed_memory` where it is wanted: asked for by the environment, or we own the process."""
    choice = _choice()
    if choice is False or (choice is None and not own_process):
        return False
    return keep_freed_memory()

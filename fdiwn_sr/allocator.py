"""Host memory reuse: keep freed tensor memory in the process instead of handing it back to the kernel.

glibc's malloc serves every large block (a feature map of a few megabytes) with
a fresh ``mmap`` and returns it with ``munmap`` when freed, so each of the
thousands of tensors a forward pass creates is faulted in page by page and
zeroed by the kernel again: at x2 on a 1280x720 output that is about 600,000
page faults and a quarter of the run time (``docs/performance.md``). Raising
glibc's mmap and trim thresholds keeps that memory in the heap for the next
tensor, as the jemalloc/tcmalloc preload that PyTorch's CPU tuning guide
recommends would. Freed memory up to the peak of one call stays with the
process. The setting is process-wide; ``FDIWN_SR_MALLOC_TUNING=0`` leaves
malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

__all__ = ["keep_freed_memory"]

ENV = "FDIWN_SR_MALLOC_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's malloc.h
THRESHOLD = 1 << 30  # blocks below this come from the heap; free heap memory above it goes back to the kernel


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


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc once per process for large, short-lived tensors; whether it is tuned.

    A no-op (False) off Linux/glibc or with ``FDIWN_SR_MALLOC_TUNING=0``.
    """
    libc = None if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off") else glibc()
    return bool(
        libc is not None
        and libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD) == 1
        and libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD) == 1
    )

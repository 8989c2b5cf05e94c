"""Host memory reuse: freed tensor memory kept for the next tensor instead of handed back to the kernel.

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

Library users get most of the gain without any setting: a CPU runner keeps a
:class:`HeapReserve`, heap memory it holds for as long as it lives, so its own
feature maps are not faulted in anew on every call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import threading
import weakref

__all__ = ["ENV", "HeapReserve", "glibc", "keep_freed_memory", "tune_if_wanted", "user_malloc_setting"]

ENV = "FDIWN_SR_MALLOC_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's malloc.h
THRESHOLD = 1 << 30  # blocks below this come from the heap; free heap memory above it goes back to the kernel
# glibc before 2.26 refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit): the fallback.
OLD_GLIBC_MMAP_MAX = 32 << 20


_tuned = False  # keep_freed_memory() has tuned this process: a HeapReserve has nothing left to do


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
    global _tuned
    _tuned = mmap or trim
    return _tuned


def tune_if_wanted(*, own_process: bool) -> bool:
    """:func:`keep_freed_memory` where it is wanted: asked for by the environment, or we own the process."""
    choice = _choice()
    if choice is False or (choice is None and not own_process):
        return False
    return keep_freed_memory()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


@functools.cache
def _heap_calls() -> ctypes.CDLL | None:
    """glibc with malloc, free, sbrk and mallinfo2 (2.33+) typed for a :class:`HeapReserve`, else None."""
    libc = glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
    libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
    libc.mallinfo2.restype, libc.mallinfo2.argtypes = _MallInfo2, []
    return libc


def _free(libc: ctypes.CDLL, held: list[int]) -> None:
    if held[0]:
        libc.free(held[0])
        held[0] = 0


class HeapReserve:
    """Heap memory a CPU runner keeps for its next call, held below a block of its own while it lives.

    glibc gives the top of a heap back to the kernel whenever enough of it is
    free, and a forward pass frees hundreds of megabytes there many times over,
    so every call faults its feature maps in again (``docs/performance.md``).
    :meth:`ensure` grows the calling thread's heap by the bytes a call needs, in
    blocks small enough to come from the heap, keeps the last one (the pin, at
    the heap's top) and frees the rest: that free space lies below the pin, where
    glibc never trims, and serves the call's tensors again and again. Nothing is
    tuned: free the pin (:meth:`release`, or the owner is collected) and glibc
    trims as before.

    Each thread has a heap of its own, so the reserve follows the thread that
    calls: a call from another thread moves it there (a pool that rotates threads
    gains nothing, and loses only the move). Off glibc, where the user set malloc
    up, with ``FDIWN_SR_MALLOC_TUNING=0`` or once :func:`keep_freed_memory` has
    tuned the process, it does nothing. A wrong guess costs speed, never
    correctness: the memory is only ever malloc'ed and freed.
    """

    BLOCK = 120 << 10  # below glibc's smallest mmap threshold (128 KiB), so every block comes from the heap

    def __init__(self, limit: int) -> None:
        self.limit = limit  # the most bytes held, whatever a call asks for
        self.size = 0  # bytes asked for (held, or found not holdable) by the thread self._thread
        self._thread: int | None = None
        self._held = [0]
        self._lock = threading.Lock()
        weakref.finalize(self, self._release_with, self._held, self._lock)

    def __reduce__(self) -> tuple:
        return HeapReserve, (self.limit,)  # a copy (pickle, deepcopy) starts empty: the pin is this object's

    @property
    def held(self) -> bool:
        """Whether a pin is in place."""
        return bool(self._held[0])

    def ensure(self, nbytes: int) -> None:
        """Hold at least ``nbytes`` (up to :attr:`limit`) of free heap below the pin in the calling thread's heap."""
        nbytes, thread = min(nbytes, self.limit), threading.get_ident()
        if nbytes <= 0 or (thread == self._thread and nbytes <= self.size):
            return  # nothing to hold (a limit of 0: a runner off the CPU), or held already
        libc = _heap_calls()
        if libc is None or _tuned or _choice() is False or user_malloc_setting() is not None:
            return
        with self._lock:
            if thread == self._thread and nbytes <= self.size:
                return
            _free(libc, self._held)
            main = threading.current_thread() is threading.main_thread()
            self._held[0] = self._pin(libc, -(-nbytes // self.BLOCK), check_top=main)
            self.size, self._thread = nbytes, thread

    def _pin(self, libc: ctypes.CDLL, count: int, *, check_top: bool) -> int:
        """Grow the heap by ``count`` blocks and keep the last; 0 where it is seen not to border the heap's top.

        Each block comes from a free chunk if one fits, else from the top, so the
        last of enough blocks borders the top. In the main thread's heap that is
        checked: the top chunk (mallinfo2's keepcost) begins after the pin and ends
        at the program break.
        """
        blocks = []
        for _ in range(count):
            block = libc.malloc(self.BLOCK)
            if not block:
                break
            blocks.append(block)
        pin = blocks[-1] if len(blocks) == count else 0
        if pin and check_top and not 0 < (libc.sbrk(0) or 0) - libc.mallinfo2().keepcost - pin <= self.BLOCK + 64:
            pin = 0
        for block in blocks:
            if block != pin:
                libc.free(block)
        return pin

    def release(self) -> None:
        """Free the pin: the held memory goes back to glibc, which trims it as usual."""
        self._release_with(self._held, self._lock)
        self.size, self._thread = 0, None

    @staticmethod
    def _release_with(held: list[int], lock: threading.Lock) -> None:
        libc = _heap_calls()
        if libc is not None:
            with lock:
                _free(libc, held)

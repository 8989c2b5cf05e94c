"""Atomic file writes: a temp file in the target's folder, renamed over the target when complete.

A reader sees the old file or the new one, never a partial one; a failed or
interrupted write leaves no temp file behind. The temp file is created with
mode 0o666, so the kernel applies the process's umask itself (as ``open()``
does) and the result is shareable like any other file the user makes. The
umask is never read: ``os.umask`` can only be read by setting it, which is
process-global and races with other threads.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_writer", "check_writable_folder", "remove_stale_temporaries"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temp(folder: Path, name: str, suffix: str = "") -> tuple[int, Path]:
    """``.{name}.{random}.tmp{suffix}`` in ``folder``, created empty (the names ``remove_stale_temporaries`` knows)."""
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp{suffix}"
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def _replacing(path: Path, suffix: str = "") -> Iterator[tuple[int, Path]]:
    """A new temp file beside ``path`` (its descriptor and path), renamed over ``path`` if the block succeeds
    and removed otherwise: the one mechanism both writers below use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name, suffix)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path`` only if the block succeeds."""
    with _replacing(Path(path)) as (fd, _), os.fdopen(fd, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temp file's path for writers that open files by name (it keeps ``path``'s extension); it replaces
    ``path`` only if the block succeeds, and is removed otherwise."""
    path = Path(path)
    with _replacing(path, path.suffix) as (fd, tmp):
        os.close(fd)
        yield tmp


def remove_stale_temporaries(path: str | os.PathLike[str]) -> None:
    """Delete the temp files of writes to ``path`` that a killed process (SIGKILL) could not clean up.

    Only for a caller that owns ``path`` (no live write to it), such as the worker a job assigns it to.
    """
    path = Path(path)
    if path.parent.is_dir():
        name = glob.escape(path.name)
        for pattern in (f".{name}.*.tmp", f".{name}.*.tmp{glob.escape(path.suffix)}"):
            for stale in path.parent.glob(pattern):
                stale.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_writer(path) as f:
        f.write(data)


def check_writable_folder(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` and write (and drop) a probe file in it: raises the OSError a later write would meet."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass

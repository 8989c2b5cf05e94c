"""fdiwn_sr.atomic: all or nothing, no temp file left on failure, the permissions open() would give,
and the umask never touched."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from fdiwn_sr.atomic import atomic_path, atomic_write_bytes, atomic_writer, remove_stale_temporaries


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_writes_the_bytes_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    atomic_write_bytes(target, b"abc" * 1000)
    assert target.read_bytes() == b"abc" * 1000
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert leftovers(target.parent) == []


def test_a_failure_inside_the_block_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    for error in (RuntimeError("disk on fire"), KeyboardInterrupt()):
        with pytest.raises(type(error)), atomic_writer(target) as f:
            f.write(b"half of the new con")
            raise error
        assert target.read_bytes() == b"old"
        assert leftovers(tmp_path) == []


def test_a_failed_rename_leaves_no_temp_file(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"data")
    assert (target / "inside").read_bytes() == b"x"
    assert leftovers(tmp_path) == []


def test_data_that_cannot_be_written_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "out.bin", "text, not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_extension_and_replaces_only_on_success(tmp_path):
    target = tmp_path / "clip.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".clip.mp4.") and tmp.suffix == ".mp4"
        assert not target.exists()
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_stale_temporaries_of_one_target_are_removed_and_nothing_else(tmp_path):
    names = [".a.png.k1ll3d.tmp", ".a.mp4.k1ll3d.tmp.mp4", ".b.png.k1ll3d.tmp", "a.png", ".a.png.lock"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    remove_stale_temporaries(tmp_path / "a.png")
    remove_stale_temporaries(tmp_path / "a.mp4")
    remove_stale_temporaries(tmp_path / "missing" / "c.png")  # no folder: nothing to do
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.png.lock", ".b.png.k1ll3d.tmp", "a.png"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002, 0o077])
def test_permissions_are_what_open_gives_under_the_umask_and_the_umask_is_never_called(tmp_path, umask):
    """In a fresh interpreter with a known umask: the file gets 0o666 & ~umask (mkstemp's 0o600 would
    hide a shared cache from other users), like a plain open(); os.umask is never called by us."""
    code = f"""
import os, stat, sys
os.umask({umask:#o})
calls = []
real_umask = os.umask
os.umask = lambda *a: calls.append(a) or real_umask(*a)
from fdiwn_sr.atomic import atomic_write_bytes
import fdiwn_sr
atomic_write_bytes(sys.argv[1] + "/atomic.bin", b"x")
open(sys.argv[1] + "/plain.bin", "wb").close()
print(oct(stat.S_IMODE(os.stat(sys.argv[1] + "/atomic.bin").st_mode)),
      oct(stat.S_IMODE(os.stat(sys.argv[1] + "/plain.bin").st_mode)), len(calls))
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    atomic_mode, plain_mode, calls = out.stdout.split()
    assert int(atomic_mode, 8) == 0o666 & ~umask == int(plain_mode, 8)
    assert calls == "0"


def test_the_mode_follows_the_umask_in_this_process_too(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    (tmp_path / "b.bin").write_bytes(b"x")
    mode = stat.S_IMODE
    assert mode((tmp_path / "a.bin").stat().st_mode) == mode((tmp_path / "b.bin").stat().st_mode)

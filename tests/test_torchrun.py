"""`torchrun -m fdiwn_sr upscale` and `--shard K/N` on CPU: disjoint shares, one summary, resumable, kill-safe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scale_out_data import CORRUPT, files, good_images, output_name, pixels

from fdiwn_sr.cli import main

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def names(mixed_folder) -> list[str]:
    return sorted(output_name(rel, 4) for rel in good_images(mixed_folder))


@pytest.fixture(scope="module")
def single(mixed_folder, x4_weights, tmp_path_factory) -> Path:
    """The single-process CLI run every parallel run must equal."""
    out = tmp_path_factory.mktemp("single") / "out"
    assert main(["upscale", str(mixed_folder), "-o", str(out), "--weights", str(x4_weights), "--device", "cpu"]) == 1
    return out


def torchrun(inputs: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "fdiwn_sr", "upscale", str(inputs), "-o", str(out), "--weights", str(weights), "--device", "cpu", *extra,
    ]  # fmt: skip


def stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {name: ((root / name).stat().st_ino, (root / name).stat().st_mtime_ns) for name in files(root)}


def assert_same_as(out: Path, single: Path, names: list[str]) -> None:
    assert files(out) == names  # no temp files, nothing for the corrupt input
    for name in names:
        mode, got = pixels(out / name)
        want_mode, want = pixels(single / name)
        assert mode == want_mode and np.array_equal(got, want), name


def test_two_ranks_write_every_output_once_and_a_rerun_nothing(mixed_folder, x4_weights, single, names, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(torchrun(mixed_folder, out, x4_weights), capture_output=True, text=True, timeout=600)
    assert r.returncode != 0  # the corrupt file is a problem: exit 1 from the ranks
    # Totals over both ranks, printed once: 13 writes for 13 distinct files means each was written exactly once.
    assert r.stdout.count("upscaled ") == 1
    assert f"upscaled {len(names)} of {len(names) + 1} image(s) x4 into {out} by 2 processes" in r.stdout
    assert "1 problem(s)" in r.stderr and f"{mixed_folder / CORRUPT}: cannot read image" in r.stderr
    assert_same_as(out, single, names)

    before = stamps(out)
    r = subprocess.run(torchrun(mixed_folder, out, x4_weights), capture_output=True, text=True, timeout=600)
    assert f"upscaled 0 of {len(names) + 1} image(s)" in r.stdout
    assert f"{len(names)} already there, kept" in r.stdout
    assert stamps(out) == before  # nothing rewritten


def _worker_pid(parent: int, rank: int) -> int | None:
    """The torchrun worker of ``rank`` among ``parent``'s children."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_killed_rank_leaves_no_partial_file_and_a_rerun_completes(mixed_folder, x4_weights, single, names, tmp_path):
    out = tmp_path / "out"
    srcs = sorted(str(mixed_folder / rel) for rel in (*good_images(mixed_folder), CORRUPT))
    rank1 = {output_name(str(Path(s).relative_to(mixed_folder)), 4) for s in srcs[1::2] if not s.endswith(CORRUPT)}
    launcher = subprocess.Popen(torchrun(mixed_folder, out, x4_weights), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (out.is_dir() and rank1 & set(files(out))):  # rank 1 is under way: kill it
            assert launcher.poll() is None and time.monotonic() < deadline, "rank 1 wrote nothing"
            time.sleep(0.01)
        pid = _worker_pid(launcher.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode != 0
    done = [name for name in files(out) if not Path(name).name.startswith(".")]
    assert set(done) < set(names)  # the job stopped part-way
    for name in done:  # whatever is there under an output name is complete and right
        assert np.array_equal(pixels(out / name)[1], pixels(single / name)[1]), name
    kept = {name: stamp for name, stamp in stamps(out).items() if name in done}

    r = subprocess.run(torchrun(mixed_folder, out, x4_weights), capture_output=True, text=True, timeout=600)
    missing = len(names) - len(done)
    assert f"upscaled {missing} of {len(names) + 1} image(s)" in r.stdout and f"{len(done)} already there" in r.stdout
    assert_same_as(out, single, names)  # the rest done; a killed writer's temp file swept
    assert {name: stamp for name, stamp in stamps(out).items() if name in kept} == kept


def test_shards_split_the_inputs_disjointly(mixed_folder, x4_weights, single, names, tmp_path, capsys):
    out = tmp_path / "out"
    common = [str(mixed_folder), "-o", str(out), "--weights", str(x4_weights), "--device", "cpu"]
    written, shares = [], []
    for k in range(3):
        main(["upscale", *common, "--shard", f"{k}/3"])
        words = capsys.readouterr().out.split("upscaled ")[1].split()  # upscaled W of N image(s) ...
        written.append(int(words[0]))
        shares.append(int(words[2]))
    assert sum(written) == len(names) and sum(shares) == len(names) + 1 and max(shares) - min(shares) <= 1
    assert_same_as(out, single, names)
    for bad in ("3/3", "1", "a/b", "0/0"):
        assert main(["upscale", *common, "--shard", bad]) == 2
        assert "--shard" in capsys.readouterr().err


def test_examples_run(mixed_folder, x4_weights, names, single, tmp_path):
    for script, out in (("torchrun_upscale.sh", tmp_path / "t"), ("slurm_array.sh", tmp_path / "s")):
        env = {**os.environ, "WEIGHTS": str(x4_weights), "PYTHON": sys.executable}
        command = ["bash", str(EXAMPLES / script), str(mixed_folder), str(out)]
        r = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert "1 problem(s)" in r.stderr, r.stderr[-3000:]
        assert_same_as(out, single, names)

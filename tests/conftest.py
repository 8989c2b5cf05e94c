"""Shared fixtures. Reference data (not ours to redistribute) is read from
``FDIWN_SR_REFERENCE_DIR`` (default ``../shared/reference``); under CI a missing
folder fails the tests that need it instead of skipping them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _reference_dir() -> Path:
    return Path(os.environ.get("FDIWN_SR_REFERENCE_DIR", ROOT.parent / "shared" / "reference")).resolve()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    ref = _reference_dir()
    if not (ref / "upstream-checkpoints").is_dir():
        message = f"reference data not found at {ref} (set FDIWN_SR_REFERENCE_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return ref


@pytest.fixture(scope="session")
def authors_pt(reference_dir: Path):
    """Path of the authors' checkpoint for a scale."""

    def get(scale: int) -> Path:
        return reference_dir / "upstream-checkpoints" / f"FDIWNx{scale}.pt"

    return get


@pytest.fixture(scope="session")
def converted(authors_pt, tmp_path_factory) -> dict[int, Path]:
    """Our safetensors for x2/x3/x4, converted once per session from the authors' files."""
    from fdiwn_sr.checkpoints import convert

    out = tmp_path_factory.mktemp("converted")
    paths = {}
    for s in (2, 3, 4):
        paths[s] = out / f"fdiwn_x{s}.safetensors"
        convert(authors_pt(s), paths[s], scale=s)
    return paths


@pytest.fixture(scope="module")
def x4_weights(authors_pt, tmp_path_factory) -> Path:
    """Our x4 safetensors, converted once per module (for tests that run it in other processes)."""
    from fdiwn_sr.checkpoints import convert

    path = tmp_path_factory.mktemp("weights") / "fdiwn_x4.safetensors"
    convert(authors_pt(4), path, scale=4)
    return path


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """The scale-out tests' folder: 13 small images of mixed sizes and modes and one corrupt file."""
    from scale_out_data import make_folder

    return make_folder(tmp_path_factory.mktemp("mixed") / "in")


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: on a busy machine, threads waiting for each other crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

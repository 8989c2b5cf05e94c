"""`fdiwn-sr upscale` end to end: folders, globs, a corrupt file, no silent overwrite, formats, exit codes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fdiwn_sr import load_model
from fdiwn_sr.cli import main

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "data" / "sample.png"


@pytest.fixture()
def folder(tmp_path) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    with Image.open(SAMPLE) as im:
        im.crop((0, 0, 20, 16)).save(src / "a.png")
        im.crop((40, 40, 64, 58)).convert("L").save(src / "sub" / "b.jpg", quality=95)
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (src / "notes.txt").write_text("not an image, and not looked at")
    return src


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["upscale", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_folder_with_a_corrupt_file(folder, tmp_path, authors_pt, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, folder, "-o", out, "--weights", authors_pt(4), "--device", "cpu")
    assert code == 1
    assert files(out) == ["a_x4.png", os.path.join("sub", "b_x4.jpg")]  # the others done, nothing partial
    assert "upscaled 2 of 3 image(s) x4" in stdout
    assert f"{folder / 'bad.png'}: cannot read image" in stderr and "1 problem(s)" in stderr
    with Image.open(out / "a_x4.png") as written, Image.open(folder / "a.png") as a:
        expected = load_model(4, weights=authors_pt(4), device="cpu").upscale(a)
        assert written.size == (80, 64) and np.array_equal(np.asarray(written), np.asarray(expected))
    with Image.open(out / "sub" / "b_x4.jpg") as b:
        assert b.mode == "L" and b.size == (96, 72)


def test_existing_outputs_are_kept_unless_overwrite(folder, tmp_path, authors_pt, capsys):
    out = tmp_path / "out"
    args = [folder / "a.png", "-o", out, "--weights", authors_pt(4), "--device", "cpu"]
    assert run(capsys, *args)[0] == 0
    (out / "a_x4.png").write_bytes(b"precious")
    (out / ".a_x4.png.k1ll3d.tmp").write_bytes(b"half")  # what a writer killed mid-write leaves
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and "1 already there, kept (--overwrite redoes them)" in stdout  # a rerun resumes
    assert (out / "a_x4.png").read_bytes() == b"precious"
    assert files(out) == ["a_x4.png"]  # the stale temp file swept
    assert run(capsys, *args, "--overwrite")[0] == 0
    with Image.open(out / "a_x4.png") as im:
        assert im.size == (80, 64)


def test_glob_single_file_formats_and_suffix(folder, tmp_path, authors_pt, capsys):
    common = ["--weights", authors_pt(4), "--device", "cpu"]
    code, _, stderr = run(capsys, folder / "*.png", "-o", tmp_path / "g", "--format", "jpg", "--suffix", "", *common)
    assert code == 1 and "bad.png" in stderr  # the glob matched the corrupt file too
    assert files(tmp_path / "g") == ["a.jpg"]
    code, _, _ = run(capsys, folder / "a.png", "-o", tmp_path / "one" / "big.webp", "--tile", "16", *common)
    assert code == 0
    with Image.open(tmp_path / "one" / "big.webp") as im:
        assert im.format == "WEBP" and im.size == (80, 64)


def test_usage_errors(folder, tmp_path, authors_pt, capsys):
    common = ["--weights", authors_pt(4), "--device", "cpu"]
    code, _, stderr = run(capsys, tmp_path / "nothing-here.png", "-o", tmp_path / "o", *common)
    assert code == 1 and "nothing-here.png: no such file" in stderr
    code, _, stderr = run(capsys, folder / "a.png", "-o", tmp_path / "o", "--half", *common)
    assert code == 2 and "--half needs a CUDA or MPS device" in stderr
    code, _, stderr = run(capsys, folder, "-o", tmp_path / "o.png", *common)
    assert code == 2 and "names one file but 3 inputs" in stderr
    code, _, stderr = run(capsys, folder / "a.png", "-o", tmp_path / "o", "--tile", "8", *common)
    assert code == 2 and "tile must be" in stderr
    assert not (tmp_path / "o").exists() or files(tmp_path / "o") == []

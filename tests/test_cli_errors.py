"""`fdiwn-sr` under a hostile folder, machine and options (issue 12): one or two lines, the right exit code.

Exit codes: 0 all done (existing outputs kept count as done), 1 some file or
the weights failed, 2 the request itself is wrong, 130 interrupted. No
traceback unless --debug or FDIWN_SR_DEBUG=1.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_odd_images import photo, png_48bit

from fdiwn_sr.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([*map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture()
def odd_folder(tmp_path) -> Path:
    """Every odd kind a folder may hold, good and bad, with links that loop and links that repeat."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    photo(20, 16).save(src / "good.png")
    photo(20, 16).quantize(256, dither=Image.Dither.NONE).save(src / "palette256.gif")
    Image.fromarray(np.asarray(photo(12, 10).convert("L"), np.uint16) * 257).save(src / "sub" / "gray16.png")
    png_48bit(src / "deep48.png", np.asarray(photo(12, 10), np.uint16) * 257)
    Image.fromarray(np.asarray(photo(12, 10).convert("L"), np.float32) / 255).save(src / "float.tif")
    frames = [photo(12, 10, left=k * 10) for k in range(3)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (src / "empty.jpg").write_bytes(b"")
    Image.new("L", (300, 300)).save(src / "huge.png")  # over --max-pixels 50000 below
    Image.fromarray(np.full((6, 6), 400.0, np.float32)).save(src / "hdr.tif")
    (src / "notes.txt").write_text("not an image")
    (src / "sub" / "loop").symlink_to(src, target_is_directory=True)  # a folder link back up: not followed
    (src / "zlink.png").symlink_to(src / "good.png")  # the same file twice: listed once
    return src


GOOD = ["deep48_x2.png", "float_x2.tiff", "good_x2.png", "palette256_x2.png", os.path.join("sub", "gray16_x2.png")]
BAD = ["anim.gif", "corrupt.png", "empty.jpg", "hdr.tif", "huge.png"]


def test_folder_of_every_odd_kind(odd_folder, tmp_path, authors_pt, capsys):
    out = tmp_path / "out"
    inputs = [odd_folder, odd_folder / "*.png", odd_folder / "**" / "*.png"]  # every file reached 1-3 times
    options = ["-o", out, "--scale", "2", "--weights", authors_pt(2), "--max-pixels", "50000"]
    code, stdout, stderr = run(capsys, "upscale", *inputs, *options)
    assert code == 1
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(g.replace(".tiff", ".png") for g in GOOD)  # tif is no output format: png
    errors = error_lines(stderr)
    named = [[name for name in BAD if f"{os.sep}{name}" in line] for line in errors]
    assert sorted(n for names in named for n in names) == BAD and all(len(n) == 1 for n in named), stderr
    assert "Traceback" not in stderr and "upscaled 5 of 10 image(s)" in stdout
    assert "deep48.png: 16-bit-per-channel RGB is read by Pillow as 8 bits" in stderr  # said, once
    with Image.open(out / "palette256_x2.png") as p, Image.open(out / "sub" / "gray16_x2.png") as g:
        assert (p.mode, p.size, g.mode, g.size) == ("P", (40, 32), "I;16", (24, 20))


def test_existing_outputs_are_skipped_and_overwrite_redoes_them(odd_folder, tmp_path, authors_pt, capsys):
    out = tmp_path / "out"
    args = ["upscale", odd_folder / "good.png", "-o", out, "--scale", "2", "--weights", authors_pt(2)]
    assert run(capsys, *args)[0] == 0
    (out / "good_x2.png").write_bytes(b"kept")
    code, stdout, stderr = run(capsys, *args)
    assert code == 0 and "1 already there, kept (--overwrite redoes them)" in stdout and stderr == ""
    assert (out / "good_x2.png").read_bytes() == b"kept"
    assert run(capsys, *args, "--overwrite")[0] == 0
    with Image.open(out / "good_x2.png") as im:
        assert im.size == (40, 32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:3", "mps", "cdua"])
def test_a_device_this_machine_lacks_is_one_line_and_exit_2_before_any_weights(device, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FDIWN_SR_OFFLINE", "1")  # were weights resolved first, the error would be about them
    monkeypatch.setenv("FDIWN_SR_HOME", str(tmp_path / "empty-cache"))
    photo(8, 8).save(tmp_path / "a.png")
    code, _, stderr = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o", "--device", device)
    assert code == 2 and len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert f"device '{device}'" in stderr
    assert ("but this PyTorch is built without CUDA" in stderr or "no CUDA GPU" in stderr) if "cuda" in device else True
    assert not (tmp_path / "empty-cache").exists()


def test_inputs_and_output_are_checked_before_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FDIWN_SR_OFFLINE", "1")
    monkeypatch.setenv("FDIWN_SR_HOME", str(tmp_path / "empty-cache"))
    code, stdout, stderr = run(capsys, "upscale", tmp_path / "typo.png", "-o", tmp_path / "o")
    typo = f"error: {tmp_path / 'typo.png'}: no such file, or no images in that folder or glob"
    assert code == 1 and error_lines(stderr) == [typo]
    assert "upscaled 0 of 0" in stdout
    photo(8, 8).save(tmp_path / "a.png")
    (tmp_path / "file").write_text("a plain file")
    code, _, stderr = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "file" / "out")
    assert code == 2 and "cannot write to the output folder" in stderr and len(stderr.splitlines()) == 1
    for bad in (["--tile", "8"], ["--tile", "32", "--tile-overlap", "17"], ["--max-pixels", "0"]):
        code, _, stderr = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o", *bad)
        assert code == 2 and len(stderr.splitlines()) == 1, stderr
    assert not (tmp_path / "empty-cache").exists()  # nothing looked for weights


def test_weights_errors_name_the_cli_fixes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FDIWN_SR_OFFLINE", "1")
    monkeypatch.setenv("FDIWN_SR_HOME", str(tmp_path / "empty-cache"))
    photo(8, 8).save(tmp_path / "a.png")
    code, _, stderr = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o")
    lines = stderr.splitlines()
    assert code == 1 and len(lines) == 2, stderr
    assert "offline mode is on (FDIWN_SR_OFFLINE=1)" in lines[0]
    assert "fix:" in lines[1] and "--weights FILE" in lines[1] and "fdiwn-sr download" in lines[1]
    assert "weights=PATH" not in stderr
    code, _, stderr = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o", "--weights", tmp_path / "no.pt")
    assert code == 2 and "weights file not found" in stderr and len(stderr.splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    photo(8, 8).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="device 'cdua'"):
        main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--device", "cdua", "--debug"])
    monkeypatch.setenv("FDIWN_SR_DEBUG", "1")
    with pytest.raises(ValueError, match="device 'cdua'"):
        main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--device", "cdua"])


def test_ctrl_c_exits_130_with_one_line(tmp_path, authors_pt):
    for k in range(3):
        photo(160, 120, left=k * 20).save(tmp_path / f"{k}.png")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "fdiwn_sr", "upscale", tmp_path, "-o", tmp_path / "o", "--weights", authors_pt(4)]
    # A shell without job control starts background jobs with SIGINT ignored, and the child would inherit
    # that; the user at a terminal has it at its default, which is what this test is about.
    default_sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    proc = subprocess.Popen(
        [*map(str, cmd), "--tile", "16"], stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    )
    seen = ""
    deadline = time.monotonic() + 120
    while "images:" not in seen and time.monotonic() < deadline:  # the model is loaded, work has begun
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130
    assert "Traceback" not in rest and rest.strip().splitlines()[-1] == "fdiwn-sr upscale: interrupted"
    assert not [p for p in (tmp_path / "o").rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_overlap_over_the_automatic_tile_is_one_line_and_nothing_written(tmp_path, authors_pt, capsys, monkeypatch):
    from fdiwn_sr import tiling

    monkeypatch.setattr(tiling, "host_memory_available", lambda: 8 * 2**20)  # automatic tiles of 24 pixels
    photo(40, 33).save(tmp_path / "a.png")
    argv = ["upscale", tmp_path / "a.png", "-o", tmp_path / "o", "--scale", "2", "--weights", authors_pt(2)]
    code, _, stderr = run(capsys, *argv, "--tile-overlap", "24")  # was: an all-black image and exit 0
    assert code == 1 and "tile_overlap=24 is more than half a tile (24 pixels)" in stderr and "Traceback" not in stderr
    assert len(error_lines(stderr)) == 1 and not list((tmp_path / "o").iterdir())

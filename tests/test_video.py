"""Video in, video out: real clips written by the tests, upscaled, decoded again and compared."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from fdiwn_sr import load_model, upscale_video
from fdiwn_sr.errors import VideoError

av = pytest.importorskip("av")
from PIL import Image  # noqa: E402
from video_samples import decode, make_clip, packets, pattern, with_subtitles  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def x2(authors_pt):
    return load_model(2, weights=authors_pt(2), device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s of moving pattern at 12 fps, 32 x 24, BT.709 tags, shown rotated by 90 degrees, an AAC tone."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", rotation=90)


@pytest.fixture(scope="module")
def expected(clip, x2) -> list[np.ndarray]:
    """upscale() of every decoded input frame, one at a time."""
    return [x2.upscale(f) for f in decode(clip)[0]]


@pytest.fixture(scope="module")
def h264(clip, x2) -> Path:
    dst = clip.parent / "out" / "clip_x2.mp4"
    result = upscale_video(clip, dst, upscaler=x2, progress=False)
    assert (result.codec, result.frames, result.width, result.height) == ("libx264", 24, 64, 48)
    assert sorted(p.name for p in dst.parent.iterdir()) == ["clip_x2.mp4"]  # no temp file left beside it
    return dst


def test_h264_size_frames_duration_audio(clip, h264):
    frames_in, times_in, facts_in = decode(clip)
    frames_out, times_out, facts_out = decode(h264)
    assert facts_in["size"] == (32, 24) and facts_out["size"] == (64, 48)
    assert len(frames_in) == len(frames_out) == 24
    assert facts_out["duration"] == facts_in["duration"] and abs(facts_in["duration"] - 2) < Fraction(1, 10)
    assert times_out == times_in  # every frame at its own time
    sound = packets(clip, "audio")
    assert len(sound) > 20 and packets(h264, "audio") == sound  # copied, not re-encoded: same bytes, same times


def test_h264_default_quality(h264, expected):
    frames = decode(h264)[0]
    scores = [psnr(f, e) for f, e in zip(frames, expected, strict=True)]
    assert min(scores) >= 35.0, scores


def test_rotation_and_colour_tags_kept(clip, h264):
    facts_in, facts_out = decode(clip)[2], decode(h264)[2]
    assert facts_in["rotation"] == facts_out["rotation"] == 90
    assert facts_in["colour"] == facts_out["colour"] == (1, 1, 1, 1)  # BT.709 primaries, trc, matrix; limited


def test_lossless_codec_equals_upscale(clip, x2, expected):
    dst = clip.parent / "lossless" / "clip_x2.mkv"
    # One frame per network call: a batch may sum in another order (1e-4 of a level) and round one pixel apart.
    result = upscale_video(clip, dst, upscaler=x2, codec="ffv1", batch_size=1, progress=False)
    assert result.pix_fmt in ("gbrp", "bgr0")  # RGB: no colour conversion rounds the network's output
    frames, _, facts = decode(dst)
    assert facts["codec"] == "ffv1" and facts["rotation"] == 90 and len(frames) == len(expected) == 24
    for k, (f, e) in enumerate(zip(frames, expected, strict=True)):
        assert np.array_equal(f, e), f"frame {k} differs from upscale() of the decoded input frame"
    assert [b for b, _ in packets(dst, "audio")] == [b for b, _ in packets(clip, "audio")]  # times: see docs


def test_variable_frame_rate_keeps_timestamps(tmp_path, x2):
    pts = [0, 40, 80, 200, 240, 500, 540, 580, 900, 1000]  # ms: bursts and pauses
    src = make_clip(tmp_path / "vfr.mkv", frames=len(pts), pts=pts, time_base=Fraction(1, 1000), audio=None)
    _, times_in, _ = decode(src)
    assert times_in == [Fraction(p, 1000) for p in pts]
    for name in ("vfr_x2.mp4", "vfr_x2.mkv"):
        upscale_video(src, tmp_path / name, upscaler=x2, progress=False)
        frames, times_out, _ = decode(tmp_path / name)
        assert len(frames) == len(pts) and times_out == times_in, name


def test_subtitles_copied(tmp_path, x2):
    srt = "1\n00:00:00,100 --> 00:00:00,400\nHello\n\n2\n00:00:00,500 --> 00:00:00,900\nWorld\n\n"
    src = with_subtitles(make_clip(tmp_path / "plain.mp4", frames=12), tmp_path / "subs.mkv", srt)
    upscale_video(src, tmp_path / "subs_x2.mkv", upscaler=x2, progress=False)
    cues = packets(tmp_path / "subs_x2.mkv", "subtitle")
    assert [c[0] for c in cues] == [b"Hello", b"World"] and cues == packets(src, "subtitle")
    assert packets(tmp_path / "subs_x2.mkv", "audio") == packets(src, "audio")


def test_clear_errors_and_no_leftovers(tmp_path, x2):
    out = tmp_path / "out"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video at all" * 10)
    with pytest.raises(VideoError, match="cannot read video"):
        upscale_video(bad, out / "a.mp4", upscaler=x2, progress=False)
    with av.open(str(tmp_path / "tone.m4a"), "w") as c:  # audio only
        a = c.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for p in [*a.encode(frame), *a.encode()]:
            c.mux(p)
    with pytest.raises(VideoError, match="has no video stream"):
        upscale_video(tmp_path / "tone.m4a", out / "b.mp4", upscaler=x2, progress=False)
    clip = make_clip(tmp_path / "c.mp4", frames=3, audio=None)
    with pytest.raises(VideoError, match=r"'libnosuchcodec' is not in the FFmpeg bundled with PyAV.*ffv1"):
        upscale_video(clip, out / "c.mp4", upscaler=x2, codec="libnosuchcodec", progress=False)
    with pytest.raises(FileNotFoundError):
        upscale_video(tmp_path / "missing.mp4", out / "d.mp4", upscaler=x2, progress=False)
    assert not out.exists() or list(out.iterdir()) == []


def test_import_does_not_load_pyav():
    code = "import sys, fdiwn_sr; fdiwn_sr.upscale_video; print('av' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "fdiwn_sr", "upscale", *map(str, args)]


@pytest.mark.slow
def test_sigint_midway_leaves_no_file(tmp_path, authors_pt):
    clip = make_clip(tmp_path / "long.mp4", frames=240, fps=12)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        cli(clip, "-o", out / "long_x2.mp4", "--scale", 2, "--weights", authors_pt(2), "--device", "cpu"),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    seen = []  # progress-bar counts read from stderr as they come

    def read() -> None:
        buf = b""
        while chunk := proc.stderr.read1(4096):
            buf = (buf + chunk)[-4096:]
            seen.extend(int(m) for m in re.findall(rb"(\d+)/240", buf))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 600
    while not any(4 <= n < 200 for n in seen) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    assert list(out.glob(".long_x2.mp4.*.tmp.mp4")), "no temp file while running"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) != 0
    reader.join(timeout=10)
    assert max(seen) < 240
    assert list(out.iterdir()) == []  # no output, no temp file


MEMORY_SCRIPT = """
import json, resource, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from video_samples import make_clip
import fdiwn_sr
frames, weights, folder = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
clip = make_clip(folder / "in.mkv", frames=frames, size=(96, 64), audio="pcm_s16le", codec="ffv1")
up = fdiwn_sr.load_model(4, weights=weights, device="cpu")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = fdiwn_sr.upscale_video(clip, folder / "out.mkv", upscaler=up, codec="ffv1", progress=False, batch_size=2)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"frames": r.frames, "before": before * 1024, "peak": peak * 1024}}))
"""


@pytest.mark.slow
def test_memory_stays_flat_on_a_long_clip(tmp_path, authors_pt):
    """Peak RSS for 4N frames is that for N: frames are not kept (nor queued without bound)."""
    runs = {}
    for n in (16, 64):
        folder = tmp_path / str(n)
        folder.mkdir()
        script = MEMORY_SCRIPT.format(tests=str(ROOT / "tests"))
        r = subprocess.run(
            [sys.executable, "-c", script, str(n), str(authors_pt(4)), str(folder)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs[n] = json.loads(r.stdout.splitlines()[-1])
        assert runs[n]["frames"] == n
    growth = runs[64]["peak"] - runs[16]["peak"]
    kept = 48 * (96 * 4) * (64 * 4) * 3  # what keeping the 48 extra output frames (uint8 RGB) would cost
    print(f"peak RSS {runs[16]['peak'] / 2**20:.1f} MiB (16 frames) vs {runs[64]['peak'] / 2**20:.1f} MiB (64)")
    assert growth < kept / 2, (growth, kept)  # RSS varies by a few MiB run to run; kept is 14 MiB


def test_cli_folder_mixing_images_and_videos(tmp_path, authors_pt):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    make_clip(src / "sub" / "walk.mp4", frames=4, audio=None)
    Image.fromarray(pattern(0, 20, 16)).save(src / "still.png")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / ".walk_x2.mp4.k1ll3d.tmp.mp4").write_bytes(b"half")  # what a killed writer leaves; swept
    r = subprocess.run(
        cli(src, "-o", out, "--scale", 2, "--weights", authors_pt(2), "--device", "cpu"),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["still_x2.png", "sub", "sub/walk_x2.mp4"]
    frames, _, facts = decode(out / "sub" / "walk_x2.mp4")
    assert len(frames) == 4 and facts["size"] == (64, 48)
    with Image.open(out / "still_x2.png") as im:
        assert im.size == (40, 32)


def test_example_script(tmp_path, authors_pt):
    clip = make_clip(tmp_path / "clip.mp4", frames=6)
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "upscale_video.py"),
            str(clip),
            "-o",
            str(tmp_path / "clip_x2.mp4"),
            "--scale",
            "2",
            "--weights",
            str(authors_pt(2)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    assert "6 frames" in r.stdout
    assert len(decode(tmp_path / "clip_x2.mp4")[0]) == 6

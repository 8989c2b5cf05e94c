"""Short real video files for the tests, written with PyAV: a moving pattern, a sine tone, tags."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def pattern(i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i`` of a moving pattern: drifting grey checks and a sliding bar over smooth colour ramps.

    Detail is in the brightness, colour changes smoothly: like camera footage, what 4:2:0 video is made for.
    """
    y, x = np.mgrid[0:height, 0:width]
    light = (((x + 2 * i) // 6 + y // 6) % 2) * 120 + 50.0
    light = np.where(np.abs(x - (3 * i) % width) < 2, 220.0, light)
    tint = np.stack([60 * x / width + 4 * i, 40 * np.sin(y / height * np.pi), 60 * (1 - y / height)], -1)
    return np.clip(0.75 * light[..., None] + tint, 0, 255).astype(np.uint8)


def make_clip(
    path: Path,
    *,
    frames: int = 24,
    fps: int = 12,
    size: tuple[int, int] = (32, 24),
    audio: str | None = "aac",
    rotation: int | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    codec: str = "libx264",
) -> Path:
    """A clip of ``frames`` frames (BT.709-tagged yuv420p H.264 by default) with an optional 440 Hz tone.

    ``pts`` (in ``time_base``) makes a variable-frame-rate clip; ``rotation`` adds a display matrix.
    """
    import av

    width, height = size
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=fps, options={"crf": "10"} if codec == "libx264" else {})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.color_primaries = v.color_trc = v.colorspace = 1  # BT.709
        v.color_range = 1  # limited
        if time_base is not None:
            v.time_base = v.codec_context.time_base = time_base
        if rotation is not None:
            v.set_display_rotation(rotation)
        a = None
        if audio is not None:
            a = out.add_stream(audio, rate=16000, layout="mono")
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(pattern(i, width, height), format="rgb24")
            f = f.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            f.pts = i if pts is None else pts[i]
            if time_base is not None:
                f.time_base = time_base
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            seconds = frames / fps
            t = np.arange(round(16000 * seconds)) / 16000
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            fmt = a.codec_context.codec.audio_formats[0].name
            for k in range(0, len(tone), 1024):
                chunk = tone[None, k : k + 1024]
                if fmt == "s16":
                    chunk = (chunk * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
                af.sample_rate, af.pts = 16000, k
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return path


def decode(path: Path) -> tuple[list[np.ndarray], list[Fraction], dict]:
    """A file's video frames as RGB arrays (read with their own matrix and range), their times, and facts."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames, times, first = [], [], None
        for f in c.decode(s):
            first = first or f
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(f.pts * f.time_base)
        cc = s.codec_context
        facts = {
            "codec": cc.name,
            "size": (s.width, s.height),
            "rotation": first.rotation,
            "colour": (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range),
            "duration": Fraction(c.duration, 1_000_000) if c.duration else None,
        }
    return frames, times, facts


def with_subtitles(src: Path, dst: Path, srt: str) -> Path:
    """``src`` remuxed into Matroska with an SRT subtitle track read from the text ``srt``."""
    import av

    cues = dst.with_suffix(".srt")
    cues.write_text(srt)
    with av.open(str(src)) as a, av.open(str(cues)) as s, av.open(str(dst), "w") as out:
        streams = {x.index: out.add_stream_from_template(x) for x in a.streams}
        text = out.add_stream_from_template(s.streams[0])
        for p in a.demux():
            if p.size:
                p.stream = streams[p.stream.index]
                out.mux(p)
        for p in s.demux():
            if p.size:
                p.stream = text
                out.mux(p)
    return dst


def packets(path: Path, kind: str) -> list[tuple[bytes, Fraction]]:
    """The bytes and presentation time of every packet of the first ``kind`` ("audio", "subtitle") stream."""
    import av

    with av.open(str(path)) as c:
        stream = next(s for s in c.streams if s.type == kind)
        return [(bytes(p), p.pts * p.time_base) for p in c.demux(stream) if p.size]

"""Video in, video out through PyAV (the ``video`` extra; its wheels bundle FFmpeg).

Three stages overlap, joined by bounded queues so memory stays flat however
long the file: a decoding thread (demux, decode, convert to RGB), the calling
thread (upscale frames in batches, tiled when large) and an encoding thread
(convert to the codec's pixel format, encode, mux). Audio and subtitle packets
travel down the same queues in demux order and are muxed unchanged. Each
frame keeps its own timestamp (variable frame rates survive), the display
matrix (rotation) and colour tags are carried over, and the file is written
under a temporary name in the destination folder and renamed only when
complete.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ._optional import require
from .atomic import atomic_path
from .errors import VideoError
from .upscaler import Upscaler

__all__ = ["DEFAULT_CODEC", "DEFAULT_CRF", "VIDEO_SUFFIXES", "VideoResult", "upscale_video"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".m4v", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv")
"""File suffixes the CLI treats as video (case-insensitive)."""
DEFAULT_CODEC = "libx264"
"""The encoder used when none is given: H.264 (``libvpx-vp9`` for ``.webm``)."""
DEFAULT_CRF = 14
"""x264's constant-quality level by default: keeps the detail the network made (>= 35 dB of it on the
tests' worst-case pattern; crf 18 gives 34.6 dB). x265 and VP9 get 8 more, as their scales sit higher."""
WEBM_CODEC = "libvpx-vp9"  # WebM holds VP8/VP9/AV1 only
# Encoders that are lossless as configured here: they get an RGB pixel format, so no colour conversion rounds.
LOSSLESS_CODECS = frozenset({"ffv1", "png", "qtrle", "huffyuv", "ffvhuff", "utvideo", "libx264rgb"})
CRF_CODECS = frozenset({"libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"})
_RGB_FORMATS = ("gbrp", "bgr0", "rgb24", "bgr24", "rgba", "bgra", "argb", "0rgb")  # lossless codecs, 8-bit
_RGB16_FORMATS = ("gbrp16le", "rgb48le", "rgba64le", "gbrp10le", "gbrp12le")  # and deeper
_COPIED = ("audio", "subtitle")
_SWS_COLORSPACE = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}  # AVColorSpace -> swscale's SWS_CS_* matrix
_END = object()


@dataclass(frozen=True)
class VideoResult:
    """What [`upscale_video`][fdiwn_sr.video.upscale_video] wrote.

    Args:
        path: The output file.
        frames: Frames written (as many as were decoded).
        width: Output width in pixels.
        height: Output height in pixels.
        codec: The encoder used.
        pix_fmt: The output's pixel format.
    """

    path: Path
    frames: int
    width: int
    height: int
    codec: str
    pix_fmt: str


def upscale_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    scale: int | None = None,
    variant: str = "fdiwn",
    *,
    upscaler: Upscaler | None = None,
    weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    codec: str | None = None,
    crf: int | None = None,
    pix_fmt: str | None = None,
    codec_options: dict[str, str] | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    batch_size: int = 4,
    queue_size: int = 8,
    progress: bool = True,
    overwrite: bool = False,
) -> VideoResult:
    """Upscale every frame of ``src`` into ``dst``; audio and subtitles copied, timing and tags kept.

    Decoding, upscaling and encoding overlap in three stages joined by bounded queues.
    The output is written to a temporary file and renamed at the end, so an interrupted
    run leaves no partial video. Needs the extra ``fdiwn-sr[video]`` (PyAV).

    Args:
        src: The input video.
        dst: The output video; its suffix picks the container (``.mp4``, ``.mkv``, ``.mov``,
            ``.webm``).
        scale: Upscaling factor (default 4, or ``upscaler``'s).
        variant: ``"fdiwn"`` or ``"fdiwn-m"``, as in [`load_model`][fdiwn_sr.load_model].
        upscaler: A ready model to use instead of loading one (it can serve many files).
        weights: A weights file, as in [`load_model`][fdiwn_sr.load_model].
        device: Where to run, as in [`load_model`][fdiwn_sr.load_model].
        dtype: Precision, as in [`load_model`][fdiwn_sr.load_model].
        codec: An FFmpeg encoder name (default ``libx264``; ``libvpx-vp9`` for ``.webm``;
            ``ffv1`` in ``.mkv`` is lossless).
        crf: Constant-quality level for x264/x265/VP9/AV1 (default 14 for x264, lower is
            better and larger).
        pix_fmt: Output pixel format (default the input's when the encoder takes it, RGB for
            lossless encoders, else ``yuv420p``).
        codec_options: Passed to the encoder, e.g. ``{"preset": "slow"}``.
        tile: As in [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale].
        tile_overlap: As in [`Upscaler.upscale`][fdiwn_sr.Upscaler.upscale].
        batch_size: Frames per network call.
        queue_size: Most frames waiting between stages (bounds the memory).
        progress: Show a progress bar over the frames.
        overwrite: Replace ``dst`` if it exists.

    Returns:
        What was written: path, frame count, size, codec and pixel format.

    Raises:
        FileNotFoundError: If ``src`` does not exist or is not a file.
        FileExistsError: If ``dst`` exists and ``overwrite`` is false.
        ValueError: If ``dst`` is ``src``, ``batch_size`` or ``queue_size`` is below 1,
            ``scale`` disagrees with ``upscaler``, or ``crf`` is given for an encoder without one.
        VideoError: If the input cannot be read or has no video stream, or the codec,
            pixel format or container is not available (a ``ValueError``).
        ImportError: If the ``video`` extra (PyAV) is not installed.
    """
    av = require("av", "video", "video upscaling")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"no such video file: {src}" if not src.exists() else f"not a file: {src}")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"the output {dst} is the input")
    if batch_size < 1 or queue_size < 1:
        raise ValueError(f"batch_size and queue_size must be at least 1, got {batch_size} and {queue_size}")
    if upscaler is not None and scale not in (None, upscaler.scale):
        raise ValueError(f"scale={scale} but the upscaler given is x{upscaler.scale}")
    encoder = _encoder(av, codec or (WEBM_CODEC if dst.suffix.lower() == ".webm" else DEFAULT_CODEC), codec is None)
    options = dict(codec_options or {})
    if crf is not None and encoder.name not in CRF_CODECS:
        raise ValueError(f"crf applies to {', '.join(sorted(CRF_CODECS))}, not {encoder.name}")
    if encoder.name in CRF_CODECS:
        # x265/VP9/AV1 scales sit higher than x264's for the same quality
        default = DEFAULT_CRF if encoder.name.startswith("libx264") else DEFAULT_CRF + 8
        options.setdefault("crf", str(default if crf is None else crf))
        if encoder.name.startswith("libvpx"):
            options.setdefault("b", "0")  # constant quality, not a bitrate cap

    inp = _open_input(av, src)
    try:
        stream = inp.streams.video[0]
        stream.thread_type = "AUTO"
        items = _demux(inp, stream)
        head = _until_first_frame(av, items, src)
        first = head[-1]
        deep = max(c.bits for c in first.format.components) > 8
        out_fmt = _pixel_format(encoder, pix_fmt, first.format.name, deep)
        if upscaler is None:
            from . import load_model

            upscaler = load_model(scale or 4, variant, weights=weights, device=device, dtype=dtype)
        total = stream.frames or (
            round(float(stream.duration * stream.time_base * stream.average_rate))
            if stream.duration and stream.average_rate
            else None
        )
        with atomic_path(dst) as tmp, _open_output(av, tmp, dst) as out:
            streams = _add_streams(out, inp, stream, first, encoder.name, out_fmt, upscaler.scale, options)
            pipeline = _Pipeline(av, upscaler, first, out, streams, deep, queue_size)
            n = pipeline.run(
                _chain(head, items),
                batch_size=batch_size,
                options={"tile": tile, "tile_overlap": tile_overlap},
                bar=tqdm(total=total, desc=src.name, unit="frame", disable=not progress, leave=False),
            )
    finally:
        inp.close()
    w, h = first.width * upscaler.scale, first.height * upscaler.scale
    return VideoResult(dst, n, w, h, encoder.name, out_fmt)


def _encoder(av: Any, name: str, default: bool) -> Any:
    """The FFmpeg video encoder ``name``, or a VideoError that says what this FFmpeg build can write."""
    try:
        codec = av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        codec = None
    if codec is None or codec.type != "video":
        have = sorted(c for c in av.codecs_available if _is_video_encoder(av, c))
        why = "H.264 (libx264, the default) is" if default else f"the video encoder {name!r} is"
        raise VideoError(
            f"{why} not in the FFmpeg bundled with PyAV {av.__version__}; pass a codec it has "
            f"(lossless: ffv1 in .mkv), one of: {', '.join(have)}"
        )
    return codec


def _is_video_encoder(av: Any, name: str) -> bool:
    try:
        return av.codec.Codec(name, "w").type == "video"
    except Exception:
        return False


def _pixel_format(encoder: Any, requested: str | None, source: str, deep: bool) -> str:
    """The encoder's pixel format: as asked; RGB for lossless encoders; else the source's, else 4:2:0."""
    have = [f.name for f in encoder.video_formats or ()]
    if requested is not None:
        if have and requested not in have:
            raise VideoError(f"{encoder.name} cannot encode pix_fmt {requested!r}; it takes {', '.join(have)}")
        return requested
    if encoder.name in LOSSLESS_CODECS:
        preferred = (_RGB16_FORMATS + _RGB_FORMATS) if deep else (_RGB_FORMATS + _RGB16_FORMATS)
    else:
        preferred = (source, "yuv420p10le", "yuv420p") if deep else (source, "yuv420p")
    for fmt in preferred:
        if not have or fmt in have:
            return fmt
    return have[0]


def _open_input(av: Any, src: Path) -> Any:
    try:
        inp = av.open(str(src))
    except av.FFmpegError as e:
        raise VideoError(f"cannot read video {src}: {e}") from e
    if not inp.streams.video:
        inp.close()
        raise VideoError(f"{src} has no video stream")
    return inp


def _demux(inp: Any, stream: Any) -> Iterator[Any]:
    """The video stream's frames and the copied streams' packets, in file order."""
    copied = [s for s in inp.streams if s.type in _COPIED]
    for packet in inp.demux(stream, *copied):
        if packet.stream is stream:
            yield from stream.decode(packet)  # the final empty packet flushes the decoder
        elif packet.size:
            yield packet


def _until_first_frame(av: Any, items: Iterator[Any], src: Path) -> list[Any]:
    """Items up to and including the first video frame, which tells the output's tags and rotation."""
    head: list[Any] = []
    try:
        for item in items:
            head.append(item)
            if isinstance(item, av.VideoFrame):
                return head
    except av.FFmpegError as e:
        raise VideoError(f"cannot decode video {src}: {e}") from e
    raise VideoError(f"{src}: its video stream has no decodable frames")


def _chain(head: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from head
    yield from rest


class _open_output:
    """The output container, closed (trailer written) on success and on failure alike."""

    def __init__(self, av: Any, tmp: Path, dst: Path) -> None:
        self.av, self.tmp, self.dst = av, tmp, dst

    def __enter__(self) -> Any:
        try:
            self.out = self.av.open(str(self.tmp), "w", format=_container_format(self.av, self.dst))
        except (self.av.FFmpegError, ValueError) as e:
            raise VideoError(f"cannot write a video named {self.dst.name}: {e}") from e
        return self.out

    def __exit__(self, kind: type | None, *_: Any) -> None:
        try:
            self.out.close()
        except self.av.FFmpegError as e:
            if kind is None:
                raise VideoError(f"cannot finish {self.dst}: {e}") from e


def _container_format(av: Any, dst: Path) -> str:
    """FFmpeg's muxer for ``dst``'s suffix (the temp file's own suffix would do, but say so clearly)."""
    suffix = dst.suffix.lower()[1:]
    names = {"mkv": "matroska", "m4v": "mp4", "mts": "mpegts", "ts": "mpegts", "mpg": "mpeg", "wmv": "asf"}
    name = names.get(suffix, suffix)
    if name not in av.formats_available:
        raise VideoError(f"no FFmpeg muxer for {dst.name!r}; use .mp4, .mkv, .mov or .webm")
    return name


def _add_streams(
    out: Any, inp: Any, stream: Any, first: Any, codec: str, pix_fmt: str, scale: int, options: dict[str, str]
) -> dict[int, Any]:
    """The output's video stream (index -1) and one copy of each audio/subtitle stream, by input index."""
    v = out.add_stream(codec, rate=stream.average_rate or stream.guessed_rate, options=options)
    v.width, v.height, v.pix_fmt = first.width * scale, first.height * scale, pix_fmt
    v.time_base = v.codec_context.time_base = stream.time_base  # each frame keeps its own pts: VFR survives
    if stream.sample_aspect_ratio:
        v.sample_aspect_ratio = stream.sample_aspect_ratio
    v.color_primaries, v.color_trc = first.color_primaries, first.color_trc
    v.colorspace = 0 if _is_rgb(pix_fmt) else first.colorspace  # 0: GBR, what RGB pixels are
    v.color_range = 2 if _is_rgb(pix_fmt) else first.color_range  # 2: full
    matrix = next((sd for sd in first.side_data if sd.type.name == "DISPLAYMATRIX"), None)
    if matrix is not None:  # rotation and flips, as the player should show them
        v.set_display_matrix(np.frombuffer(bytes(matrix), np.int32).tolist())
    v.metadata.update({k: val for k, val in stream.metadata.items() if k in ("language", "title")})
    streams = {-1: v}
    for s in inp.streams:
        if s.type in _COPIED:
            streams[s.index] = out.add_stream_from_template(s)
            streams[s.index].metadata.update(s.metadata)
    out.metadata.update(inp.metadata)
    return streams


def _is_rgb(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("gbr", "rgb", "bgr", "argb", "0rgb", "abgr"))


class _Pipeline:
    """decode thread -> bounded queue -> upscale (this thread) -> bounded queue -> encode/mux thread."""

    def __init__(
        self, av: Any, upscaler: Upscaler, first: Any, out: Any, streams: dict[int, Any], deep: bool, size: int
    ) -> None:
        self.av, self.upscaler, self.out, self.streams = av, upscaler, out, streams
        self.video = streams[-1]
        self.rgb = "rgb48le" if deep else "rgb24"
        # Frames are read with their own matrix and range (PyAV's default) and written with the output's.
        self.dst_colour = {
            "dst_colorspace": _SWS_COLORSPACE.get(self.video.colorspace),
            "dst_color_range": self.video.color_range,
        }
        self.decoded: queue.Queue = queue.Queue(size)
        self.upscaled: queue.Queue = queue.Queue(size)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.counts = {"decoded": 0, "encoded": 0}

    def run(self, items: Iterator[Any], *, batch_size: int, options: dict[str, Any], bar: tqdm) -> int:
        workers = [
            threading.Thread(target=self._guard, args=(self._decode, items), name="fdiwn-video-decode", daemon=True),
            threading.Thread(target=self._guard, args=(self._encode,), name="fdiwn-video-encode", daemon=True),
        ]
        for t in workers:
            t.start()
        try:
            self._upscale(batch_size, options, bar)
            workers[1].join()
        except BaseException:
            self.stop.set()
            raise
        finally:
            self.stop.set()
            for q in (self.decoded, self.upscaled):  # unblock a worker waiting to put
                _drain(q)
            for t in workers:
                t.join(timeout=30)
            bar.close()
        if self.errors:
            raise self.errors[0]
        if self.counts["encoded"] != self.counts["decoded"]:  # never a silently shorter video
            raise VideoError(f"decoded {self.counts['decoded']} frames but encoded {self.counts['encoded']}")
        return self.counts["encoded"]

    def _guard(self, work: Callable[..., None], *args: Any) -> None:
        try:
            work(*args)
        except BaseException as e:
            if isinstance(e, self.av.FFmpegError):
                e = VideoError(f"{threading.current_thread().name.rsplit('-', 1)[-1]}: {e}")
            self.errors.append(e)
            self.stop.set()

    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return _END

    def _decode(self, items: Iterator[Any]) -> None:
        """Frames become (RGB array, pts, time base); packets pass as they are."""
        last_pts, step = None, None
        for item in items:
            if isinstance(item, self.av.VideoFrame):
                pts = item.pts
                if pts is None:  # no timestamp in the file: one frame duration after the last
                    step = step or max(1, round(1 / (item.time_base * self.video.codec_context.framerate)))
                    pts = 0 if last_pts is None else last_pts + step
                last_pts = pts
                rgb = item.to_ndarray(format=self.rgb)
                item = (rgb, pts, item.time_base)
                self.counts["decoded"] += 1
            if not self._put(self.decoded, item):
                return
        self._put(self.decoded, _END)

    def _upscale(self, batch_size: int, options: dict[str, Any], bar: tqdm) -> None:
        """Collect ``batch_size`` frames (and the packets between them), upscale, pass on in order."""
        pending: list[Any] = []
        frames = 0
        while True:
            item = self._get(self.decoded)
            done = item is _END
            if not done:
                pending.append(item)
                frames += isinstance(item, tuple)
            if frames and (frames == batch_size or done):
                where = [k for k, it in enumerate(pending) if isinstance(it, tuple)]
                ups = self.upscaler.upscale([pending[k][0] for k in where], **options)
                for k, up in zip(where, ups, strict=True):
                    pending[k] = (up, *pending[k][1:])
                bar.update(frames)
            if frames == batch_size or done:
                for it in pending:
                    if not self._put(self.upscaled, it):
                        return
                pending, frames = [], 0
            if done:
                self._put(self.upscaled, _END)
                return

    def _encode(self) -> None:
        while (item := self._get(self.upscaled)) is not _END:
            if isinstance(item, tuple):
                rgb, pts, time_base = item
                frame = self.av.VideoFrame.from_ndarray(rgb, format=self.rgb)
                if frame.format.name != self.video.pix_fmt:
                    frame = frame.reformat(format=self.video.pix_fmt, **self.dst_colour)
                frame.pts, frame.time_base = pts, time_base
                self._mux(self.video.encode(frame))
                self.counts["encoded"] += 1
            else:
                item.stream = self.streams[item.stream.index]
                self.out.mux(item)
        if not self.stop.is_set():
            self._mux(self.video.encode(None))

    def _mux(self, packets: list[Any]) -> None:
        for p in packets:
            self.out.mux(p)


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return

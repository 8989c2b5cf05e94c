"""A web page to try FDIWN: upload, pick x2/x3/x4, compare before/after, download the PNG.

``fdiwn-sr serve`` runs it locally; :func:`build_app` returns the Gradio app to
launch, mount or deploy (the repository's ``app.py`` is a Hugging Face Space
entry). Gradio comes with the optional extra (``pip install 'fdiwn-sr[demo]'``)
and is imported only here.

The work itself (:class:`DemoUpscaler`) knows nothing of Gradio: models loaded
lazily, once per scale, shared by every request; one job at a time per device;
uploads read as image data with a size limit; results written as PNG at the
input's full bit depth, alpha kept, in a private temporary folder that is
emptied as results age and removed when the app goes away.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image, UnidentifiedImageError

from . import images, load_model
from ._optional import require
from .upscaler import Upscaler

if TYPE_CHECKING:
    import gradio

__all__ = ["DEFAULT_MAX_SIZE", "SCALES", "DemoUpscaler", "Result", "build_app", "parse_size", "serve"]

SCALES = (2, 3, 4)
DEFAULT_MAX_SIZE = (2048, 2048)  # width, height of the largest input accepted
MAX_UPLOAD = "200mb"  # a 2048 x 2048 16-bit RGBA PNG stored uncompressed is 32 MB; room for odd encodings
RESULT_AGE_S = 15 * 60  # results older than this are removed when the next job starts
SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "data" / "sample.png"  # present in a checkout
_CONCURRENCY_ID = "fdiwn-sr-device"  # the page's button and the API share one queue slot
_BIT_DEPTH = {"I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 16, "F": 32}


def parse_size(text: str) -> tuple[int, int]:
    """``"2048x2048"`` (or ``"2048"`` for a square) -> (width, height)."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"a size is WIDTHxHEIGHT in pixels (e.g. 2048x2048), got {text!r}")
    w = int(parts[0])
    return w, int(parts[-1])


@dataclass(frozen=True)
class Result:
    """One finished job: the upscaled image, its PNG and what the page reports."""

    image: Image.Image  # the result in the input's mode (bit depth and alpha kept)
    png: Path  # written at full bit depth; removed once it ages (see RESULT_AGE_S)
    input_size: tuple[int, int]
    seconds: float  # the network's time, model loading excluded
    load_seconds: float  # time spent loading the model for this job (0 when it was loaded before)
    device: str

    def summary(self) -> str:
        w, h = self.input_size
        ow, oh = self.image.size
        load = f" (model loaded first, {self.load_seconds:.1f} s)" if self.load_seconds else ""
        return (
            f"Input {w} x {h} {_describe(self.image.mode)} -> output {ow} x {oh}: "
            f"x{ow // w} in {self.seconds:.2f} s on {self.device}{load}"
        )


class DemoUpscaler:
    """The demo's work, apart from any web page; safe to share between threads.

    ``weights`` maps a scale to a file (our safetensors or the authors' ``.pt``);
    scales not named use the pretrained weights. ``load_options`` go to
    :func:`fdiwn_sr.load_model` (``dtype``, ``backend``, ``cache_dir``, ...).
    """

    def __init__(
        self,
        *,
        weights: Mapping[int, str | os.PathLike[str]] | None = None,
        device: torch.device | str | None = None,
        variant: str = "fdiwn",
        max_size: tuple[int, int] = DEFAULT_MAX_SIZE,
        **load_options: Any,
    ) -> None:
        weights = dict(weights or {})
        if not set(weights) <= set(SCALES):
            raise ValueError(f"weights are given per scale ({', '.join(map(str, SCALES))}), got {sorted(weights)}")
        if len(max_size) != 2 or not all(isinstance(n, int) and n > 0 for n in max_size):
            raise ValueError(f"max_size is (width, height) in pixels, got {max_size!r}")
        self.weights = weights
        self.device = device
        self.variant = variant
        self.max_size = tuple(max_size)
        self.load_options = load_options
        self._models: dict[int, Upscaler] = {}
        self._load_lock = threading.Lock()
        self._job_lock = threading.Lock()  # one job per device, even when called outside Gradio's queue
        self.workdir = Path(tempfile.mkdtemp(prefix="fdiwn-sr-demo-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.workdir, ignore_errors=True)

    def model(self, scale: int) -> Upscaler:
        """The model for ``scale``, loaded on first use and kept."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        with self._load_lock:
            if scale not in self._models:
                self._models[scale] = load_model(
                    scale, self.variant, weights=self.weights.get(scale), device=self.device, **self.load_options
                )
            return self._models[scale]

    @property
    def loaded_scales(self) -> list[int]:
        return sorted(self._models)

    def read(self, path: str | os.PathLike[str], name: str | None = None) -> Image.Image:
        """The uploaded file as an image; a clear ``ValueError`` when it is not one or is too large.

        The size is read from the header before any pixel is decoded. ``name``
        is what the message calls the file (never the server's path).
        """
        name = name or Path(path).name
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            raise ValueError(f"{name} is not an image this demo can read (PNG, JPEG, WebP, ...)") from e
        mw, mh = self.max_size
        if w > mw or h > mh:
            raise ValueError(
                f"{name} is {w} x {h} pixels; this demo takes images up to {mw} x {mh}. "
                "Crop or shrink it, or use `fdiwn-sr upscale` on your own machine (no limit)."
            )
        try:
            return images.open_image(path)
        except ValueError as e:
            raise ValueError(f"{name} is not an image this demo can read (PNG, JPEG, WebP, ...)") from e

    def run(
        self,
        path: str | os.PathLike[str],
        scale: int,
        *,
        name: str | None = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> Result:
        """Read, upscale and write the PNG of one upload; ``progress(fraction, what)`` is told each step."""
        scale = _as_scale(scale)
        step = progress or (lambda _f, _w: None)
        image = self.read(path, name)
        with self._job_lock:
            self._remove_old_results()
            load_seconds = 0.0
            if scale not in self._models:
                step(0.05, f"loading the x{scale} model")
                t0 = time.perf_counter()
                self.model(scale)
                load_seconds = time.perf_counter() - t0
            upscaler = self.model(scale)
            step(0.2, f"upscaling x{scale}")
            t0 = time.perf_counter()
            out = upscaler.upscale(image)
            seconds = time.perf_counter() - t0
            step(0.9, "writing the PNG")
            job = Path(tempfile.mkdtemp(dir=self.workdir))
            png = job / f"{_safe_stem(name or Path(path).name)}_x{scale}.png"
            images.save_image(out, png, "png")
        return Result(out, png, image.size, seconds, load_seconds, str(upscaler.device))

    def close(self) -> None:
        """Remove every result file now (also done when the object is collected or the process exits)."""
        self._cleanup()

    def _remove_old_results(self) -> None:
        now = time.time()
        for job in self.workdir.iterdir():
            if now - job.stat().st_mtime > RESULT_AGE_S:
                shutil.rmtree(job, ignore_errors=True)


def build_app(
    *,
    weights: Mapping[int, str | os.PathLike[str]] | None = None,
    device: torch.device | str | None = None,
    variant: str = "fdiwn",
    max_size: tuple[int, int] = DEFAULT_MAX_SIZE,
    example: str | os.PathLike[str] | None = SAMPLE,
    **load_options: Any,
) -> gradio.Blocks:
    """The demo as a Gradio ``Blocks`` app, not launched: ``build_app().launch()``, or mount it.

    Options are :class:`DemoUpscaler`'s. ``example`` is the picture offered as an
    example (the bundled sample when present; None for none). The API endpoint
    ``upscale`` takes (image file, scale) and returns the upscaled PNG file.
    """
    gr = require("gradio", "demo", "the web demo")
    worker = DemoUpscaler(weights=weights, device=device, variant=variant, max_size=max_size, **load_options)
    mw, mh = worker.max_size
    tracker = gr.Progress()  # Gradio finds the progress bar through a default argument

    def upscale_page(path: str | None, scale: int, progress: Any = tracker) -> tuple[Any, Any, str]:
        result = _run(path, scale, lambda f, what: progress(f, desc=what))
        before = _for_display(images.open_image(path)).resize(result.image.size, Image.Resampling.BICUBIC)
        return (before, _for_display(result.image)), gr.DownloadButton(value=str(result.png)), result.summary()

    def upscale(image: str, scale: int) -> str:
        """Upscale an image file x2, x3 or x4; returns the PNG (full bit depth, alpha kept)."""
        return str(_run(image, scale).png)

    def _run(path: str | None, scale: int, progress: Callable[[float, str], None] | None = None) -> Result:
        if not path:
            raise gr.Error("Upload an image first.")
        try:
            return worker.run(path, scale, name=Path(path).name, progress=progress)
        except (ValueError, TypeError) as e:
            raise gr.Error(str(e)) from e

    with gr.Blocks(title="FDIWN super-resolution", analytics_enabled=False, delete_cache=(300, 900)) as app:
        gr.Markdown(
            "# FDIWN super-resolution\n"
            "Upload a photo (PNG, JPEG or WebP; RGBA and 16-bit are kept), choose the scale and compare "
            f"bicubic (left) with FDIWN (right). Images up to {mw} x {mh} pixels."
        )
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Image", file_types=["image"], type="filepath", elem_id="fdiwn-upload")
                scale = gr.Radio([(f"x{s}", s) for s in SCALES], value=4, label="Scale", elem_id="fdiwn-scale")
                run = gr.Button("Upscale", variant="primary")
                info = gr.Markdown(elem_id="fdiwn-info")
                if example is not None and Path(example).is_file():
                    gr.Examples(
                        [[str(example), 4]],
                        inputs=[upload, scale],
                        label="Example (CC0 photo)",
                        elem_id="fdiwn-examples",
                    )
            with gr.Column(scale=2):
                slider = gr.ImageSlider(
                    label="Before (bicubic) | after (FDIWN)",
                    type="pil",
                    format="png",
                    interactive=False,
                    elem_id="fdiwn-slider",
                )
                download = gr.DownloadButton("Download PNG", value=None, variant="secondary", elem_id="fdiwn-download")
        queue = {"concurrency_limit": 1, "concurrency_id": _CONCURRENCY_ID}
        run.click(upscale_page, [upload, scale], [slider, download, info], api_visibility="private", **queue)
        api_out = gr.File(label="Upscaled PNG", visible=False)
        gr.Button(visible=False).click(upscale, [upload, scale], api_out, api_name="upscale", **queue)
    app.fdiwn_worker = worker  # the models and results behind the page, for callers that want them
    return app


def serve(host: str | None = "127.0.0.1", port: int | None = None, **options: Any) -> None:
    """Build the app and serve it until interrupted; only this machine can reach it unless ``host`` says so.

    For a process of its own (``fdiwn-sr serve``, ``app.py``): unless
    ``GRADIO_TEMP_DIR`` is set, Gradio's files (uploads, results) go to a private
    temporary folder that is removed when the server stops. ``host=None`` takes
    ``GRADIO_SERVER_NAME`` (as a Hugging Face Space sets it), else 127.0.0.1.
    """
    private = None if os.environ.get("GRADIO_TEMP_DIR") else tempfile.mkdtemp(prefix="fdiwn-sr-serve-")
    if private:
        os.environ["GRADIO_TEMP_DIR"] = private  # read by Gradio as it builds the app
    try:
        app = build_app(**options)
        try:
            app.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD, show_error=True)
        finally:
            app.close()
            app.fdiwn_worker.close()
    finally:
        if private:
            del os.environ["GRADIO_TEMP_DIR"]
            shutil.rmtree(private, ignore_errors=True)


def _as_scale(scale: Any) -> int:
    if isinstance(scale, str) and re.fullmatch(r"[xX]?\d", scale.strip()):
        scale = int(scale.strip().lstrip("xX"))
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise ValueError(f"scale must be 2, 3 or 4, got {scale!r}")
    return scale


def _safe_stem(name: str) -> str:
    """A file stem made of the upload's name, safe on every file system."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem)[:64].strip("_") or "image"


def _describe(mode: str) -> str:
    bits = _BIT_DEPTH.get(mode, 8)
    kind = {"L": "gray", "LA": "gray + alpha", "RGBA": "RGB + alpha", "P": "palette", "1": "1-bit"}.get(mode)
    kind = kind or ("gray" if mode in _BIT_DEPTH else mode)
    return f"({kind}, {bits}-bit)" if mode != "1" else "(1-bit)"


def _for_display(im: Image.Image) -> Image.Image:
    """8-bit RGB or RGBA for the browser (the download keeps the full depth)."""
    if im.mode in ("RGB", "RGBA"):
        return im
    if im.mode in _BIT_DEPTH:  # 16-bit or float gray: scale to 8 bits, never clip
        t, _ = images.to_tensor(im)
        return images.from_tensor(t, images.Spec("pil", 1, "L")).convert("RGB")
    return im.convert("RGBA" if "A" in im.mode or im.has_transparency_data else "RGB")

"""The web demo: the work behind it, `fdiwn-sr serve` driven by headless Chromium and by gradio_client.

One server (a real `fdiwn-sr serve` process on 127.0.0.1) serves the whole
module; the last test stops it and checks that it cleaned up after itself.
The browser is Debian's chromium through Playwright (no browser download).
With Gradio installed (the demo extra) these tests need chromium and
playwright too; without Gradio they are skipped, except under CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from fdiwn_sr import load_model
from fdiwn_sr.demo import DemoUpscaler, parse_size

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "data" / "sample.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _need(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} not installed (pip install -e '.[dev,demo]')")


@pytest.fixture(scope="module")
def set5_lr(reference_dir) -> Path:
    """The smallest Set5 x2 low-resolution image (butterfly, 128 x 128)."""
    return reference_dir / "set5" / "x2" / "LR" / "butterfly.png"


def expected(path: Path, weights: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(load_model(2, weights=weights, device="cpu").upscale(im))


# --- the work behind the page, without a server -------------------------------------------------


def test_parse_size():
    assert parse_size("2048x1024") == (2048, 1024) and parse_size("512") == (512, 512)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("big")


def test_worker_loads_lazily_once_and_keeps_depth_and_alpha(converted, tmp_path):
    worker = DemoUpscaler(weights=converted, device="cpu", max_size=(40, 30))
    assert worker.loaded_scales == []  # nothing loaded before the first job
    rng = np.random.default_rng(16)
    deep = tmp_path / "deep.png"
    Image.fromarray(rng.integers(0, 65536, (12, 10), dtype=np.uint16)).save(deep)
    rgba = tmp_path / "rgba.webp"
    Image.fromarray(rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)).save(rgba, lossless=True)

    first = worker.run(deep, 2)
    model = worker.model(2)
    with Image.open(first.png) as png, Image.open(deep) as src:
        assert png.mode == "I;16" and png.size == (20, 24)  # 16 bits kept in the download
        assert np.array_equal(np.asarray(png), np.asarray(model.upscale(src)))
    second = worker.run(rgba, "x2")
    assert worker.model(2) is model and worker.loaded_scales == [2]  # loaded once, shared
    assert first.load_seconds > 0 and second.load_seconds == 0
    with Image.open(second.png) as png, Image.open(rgba) as src:
        assert png.mode == "RGBA" and np.array_equal(np.asarray(png), np.asarray(model.upscale(src)))
    assert "Input 10 x 12 (RGB + alpha, 8-bit) -> output 20 x 24: x2" in second.summary()

    Image.new("RGB", (41, 8)).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match=r"wide.png is 41 x 8 pixels; this demo takes images up to 40 x 30"):
        worker.run(tmp_path / "wide.png", 2)
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ValueError, match=r"^notes.png is not an image this demo can read"):
        worker.run(tmp_path / "notes.png", 2)
    with pytest.raises(ValueError, match="scale must be 2, 3 or 4"):
        worker.run(deep, 5)
    workdir = worker.workdir
    assert any(workdir.rglob("*.png"))
    worker.close()
    assert not workdir.exists()


def test_weights_are_named_per_scale():
    with pytest.raises(ValueError, match="per scale"):
        DemoUpscaler(weights={8: "x8.safetensors"})


def test_space_requirements_match_pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [d for d in project["dependencies"] if "python_version" not in d] + project["optional-dependencies"][
        "demo"
    ]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert [x for x in lines if x and not x.startswith("#")] == wanted
    assert "serve(host=None)" in (ROOT / "app.py").read_text()


# --- a real server -------------------------------------------------------------------------------


class Server:
    def __init__(self, converted: dict[int, Path], root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tmp = root / "tmp"  # the server's TMPDIR: every file it writes goes under it
        self.tmp.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"} | {"TMPDIR": str(self.tmp)}
        env["GRADIO_ANALYTICS_ENABLED"] = "False"
        weights = [f"--weights={s}={converted[s]}" for s in (2, 4)]
        self.log_path = root / "server.log"
        self.log = self.log_path.open("w")
        cmd = [sys.executable, "-m", "fdiwn_sr", "serve", "--port", str(self.port), "--device", "cpu", *weights]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300  # importing torch and gradio on a busy 2-core machine is slow
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if requests.get(self.url, timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"the server did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(converted, tmp_path_factory):
    _need("gradio")
    srv = Server(converted, tmp_path_factory.mktemp("serve"))
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


@pytest.fixture()
def page(server, tmp_path):
    """A headless Chromium page on the demo, with downloads allowed."""
    _need("playwright")
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 760})
            page = context.new_page()
            page.set_default_timeout(180_000)
            page.goto(server.url)
            yield page
        finally:
            browser.close()


def upload(page, path: Path) -> None:
    clear = page.locator("#fdiwn-upload").get_by_role("button", name="Clear")
    if clear.count():  # a file is there already: remove it to get the drop zone back
        clear.click()
    page.locator("#fdiwn-upload input[type=file]").set_input_files(str(path))
    page.locator("#fdiwn-upload").get_by_text(path.name).first.wait_for()


@pytest.mark.slow
def test_in_a_browser(page, server, set5_lr, converted, tmp_path):
    # Above the size limit (default 2048 x 2048): the message, read from the header, nothing decoded.
    Image.new("RGB", (2049, 4)).save(tmp_path / "too-wide.png")
    upload(page, tmp_path / "too-wide.png")
    page.get_by_role("button", name="Upscale", exact=True).click()
    page.get_by_text("too-wide.png is 2049 x 4 pixels; this demo takes images up to 2048 x 2048").wait_for()

    # Not an image (named like one, so it passes the page's file filter): a clear error.
    (tmp_path / "not-a-photo.png").write_bytes(b"%PDF-1.7 this is a document, not a picture")
    upload(page, tmp_path / "not-a-photo.png")
    page.get_by_role("button", name="Upscale", exact=True).click()
    page.get_by_text("not-a-photo.png is not an image this demo can read").wait_for()

    # The server keeps serving: a Set5 image at x2.
    upload(page, set5_lr)
    page.locator("#fdiwn-scale").get_by_text("x2", exact=True).click()
    page.get_by_role("button", name="Upscale", exact=True).click()
    page.locator("#fdiwn-info").get_by_text("Input 128 x 128 (RGB, 8-bit) -> output 256 x 256: x2").wait_for()

    # The slider shows both pictures, each at the output size.
    pictures = page.locator("#fdiwn-slider img")
    pictures.nth(1).wait_for()
    assert pictures.count() == 2
    sizes = pictures.evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert sizes == [[True, 256, 256], [True, 256, 256]]

    # The download is the library's result, pixel for pixel.
    with page.expect_download() as info:
        page.locator("#fdiwn-download").click()
    got = tmp_path / "download.png"
    info.value.save_as(got)
    assert info.value.suggested_filename == "butterfly_x2.png"
    with Image.open(got) as im:
        assert im.format == "PNG" and im.size == (256, 256)
        assert np.array_equal(np.asarray(im), expected(set5_lr, converted[2]))

    # The bundled sample (our CC0 photo, also the page's example) at x4, for the screenshot in docs/demo.md.
    upload(page, SAMPLE)
    page.locator("#fdiwn-scale").get_by_text("x4", exact=True).click()
    page.get_by_role("button", name="Upscale", exact=True).click()
    page.locator("#fdiwn-info").get_by_text("Input 128 x 96 (RGB, 8-bit) -> output 512 x 384: x4").wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#fdiwn-slider img')].every(i => i.complete && i.naturalWidth == 512)"
    )
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot))
    if os.environ.get("FDIWN_SR_UPDATE_SCREENSHOT"):  # how docs/images/demo.png was made
        target = ROOT / "docs" / "images" / "demo.png"
        target.parent.mkdir(exist_ok=True)
        with Image.open(shot) as im:
            im.convert("RGB").quantize(256).save(target, optimize=True)


@pytest.mark.slow
def test_gradio_client(server, set5_lr, converted, tmp_path):
    _need("gradio_client")
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server.url, verbose=False, download_files=str(tmp_path))
    out = Path(client.predict(handle_file(str(set5_lr)), 2, api_name="/upscale"))
    with Image.open(out) as im:
        assert out.name == "butterfly_x2.png" and im.size == (256, 256)
        assert np.array_equal(np.asarray(im), expected(set5_lr, converted[2]))

    (tmp_path / "fake.png").write_bytes(b"GIF89a but cut short")
    with pytest.raises(AppError, match=r"fake\.png is not an image this demo can read"):
        client.predict(handle_file(str(tmp_path / "fake.png")), 2, api_name="/upscale")
    with pytest.raises(AppError, match=r"5 .* is not in the list of choices: \[2, 3, 4\]"):
        client.predict(handle_file(str(set5_lr)), 5, api_name="/upscale")


@pytest.mark.slow
def test_a_path_the_client_names_is_not_read(server, set5_lr):
    """Uploads are data: a request naming a server path instead of uploading is refused."""
    body = {"data": [{"path": str(set5_lr), "meta": {"_type": "gradio.FileData"}}, 2]}
    r = requests.post(f"{server.url}gradio_api/call/upscale", json=body, timeout=30)
    assert r.status_code == 200
    events = requests.get(f"{server.url}gradio_api/call/upscale/{r.json()['event_id']}", timeout=120).text
    assert "event: error" in events and "event: complete" not in events


@pytest.mark.slow
def test_client_example(server, converted, tmp_path):
    out = tmp_path / "sample_x2.png"
    cmd = [sys.executable, ROOT / "examples" / "demo_client.py", SAMPLE, "--url", server.url, "--scale", "2"]
    run = subprocess.run([*map(str, cmd), "-o", str(out)], capture_output=True, text=True, check=True)
    assert f"wrote {out} (256 x 192)" in run.stdout
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im), expected(SAMPLE, converted[2]))


@pytest.mark.slow
def test_server_stops_cleanly_leaving_no_files(server):
    assert server.stop() == 0, server.output()
    assert "Running on local URL:  http://127.0.0.1:" in server.output()  # bound to this machine only
    left = [p for p in server.tmp.rglob("*") if p.is_file()]
    assert left == [], f"temp files left behind: {left}"
    shutil.rmtree(server.tmp)

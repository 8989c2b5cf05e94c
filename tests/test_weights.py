"""Pretrained weights: manifest, cache, Hub download, upstream fallback, offline use, publishing.

A real HTTP server on 127.0.0.1 (tests/hub_server.py) stands in for the Hub and
for the authors' upstream URL; the real ``huggingface_hub`` and ``requests``
clients talk to it. Served files are built at test time from the reference data.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import huggingface_hub.constants
import numpy as np
import pytest
from hub_server import LocalHub
from PIL import Image
from safetensors.torch import load_file

from fdiwn_sr import IntegrityError, WeightsError, load_model
from fdiwn_sr.checkpoints import sha256_file
from fdiwn_sr.cli import main as cli
from fdiwn_sr.manifest import load_manifest, manifest_path, parse_manifest
from fdiwn_sr.network import FDIWN, count_parameters
from fdiwn_sr.publish import AUTHORS_REPO, publish
from fdiwn_sr.weights import ATTEMPTS, convert_verified, resolve_weights

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = load_manifest()
REPO = MANIFEST.entry(4, "fdiwn").hub.repo_id
REPO_FILES = ["README.md", "config.json", "fdiwn_x2.safetensors", "fdiwn_x3.safetensors", "fdiwn_x4.safetensors"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No proxy for 127.0.0.1, quick retries, and no user setting or user cache leaking into a test.

    huggingface_hub read HF_HOME when it was imported; its cache folder is looked up at call time.
    """
    for name in ("HF_HUB_OFFLINE", "FDIWN_SR_OFFLINE", "FDIWN_SR_UPSTREAM_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("FDIWN_SR_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("FDIWN_SR_HOME", str(tmp_path / "default-home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "default-hf-cache"))


@pytest.fixture(scope="module")
def golden(reference_dir):
    return {s: load_file(reference_dir / "golden" / f"official_x{s}.safetensors") for s in (2, 3, 4)}


def golden_diff(upscaler, golden) -> float:
    g = golden[upscaler.scale]
    return (upscaler.forward(g["input_crop"] / 255) * 255 - g["output_crop"]).abs().max().item()


@pytest.fixture
def hub(converted):
    """The Hub as it should be: our converted files under the manifest's names."""
    with LocalHub() as h:
        for e in MANIFEST.models.values():
            h.add_file(e.hub.repo_id, e.hub.filename, converted[e.scale].read_bytes())
        yield h


@pytest.fixture
def empty_hub():
    """A Hub where the repository does not exist (404 RepoNotFound)."""
    with LocalHub() as h:
        yield h


@pytest.fixture
def upstream(authors_pt, monkeypatch):
    """The authors' GitHub URLs, reached through FDIWN_SR_UPSTREAM_MIRROR."""
    with LocalHub() as u:
        for e in MANIFEST.models.values():
            u.serve(urlsplit(e.upstream.url).path, authors_pt(e.scale).read_bytes())
        monkeypatch.setenv("FDIWN_SR_UPSTREAM_MIRROR", u.url)
        yield u


def cached_files(folder: Path) -> list[Path]:
    """Weight bytes anywhere under a cache folder (lock files and Hub bookkeeping aside)."""
    skip = ("CACHEDIR.TAG", ".lock")
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(skip) and "refs" not in p.parts]


def subprocess_env(hub: LocalHub, tmp_path: Path) -> dict[str, str]:
    """huggingface_hub reads HF_* once at import: processes that need them set get a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FDIWN_SR_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "hf-home"),
        FDIWN_SR_HOME=str(tmp_path / "home"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


# --- the manifest ---------------------------------------------------------------------------------


def test_manifest_matches_conversion_upstream_and_reference(converted, authors_pt, reference_dir):
    sums = dict(line.split()[::-1] for line in (reference_dir / "upstream-checkpoints" / "SHA256SUMS").open())
    expected = json.loads((reference_dir / "expected_metrics.json").read_text())
    assert sorted((e.variant, e.scale) for e in MANIFEST.models.values()) == [("fdiwn", 2), ("fdiwn", 3), ("fdiwn", 4)]
    for e in MANIFEST.models.values():
        s = e.scale
        # converted in this process; the manifest's hashes came from another: conversion is byte-stable
        assert sha256_file(converted[s]) == e.sha256
        assert converted[s].stat().st_size == e.size
        assert e.upstream.sha256 == sums[f"FDIWNx{s}.pt"] == sha256_file(authors_pt(s))
        assert e.upstream.size == authors_pt(s).stat().st_size
        assert e.upstream.url.startswith("https://github.com/24wenjie-li/FDIWN/")
        assert e.params == count_parameters(FDIWN(s)) == expected[f"x{s}"]["params"]
        assert e.metrics["set5_psnr_y"] == expected[f"x{s}"]["set5_mean_psnr_y"]
        assert e.metrics["set5_ssim_y"] == expected[f"x{s}"]["set5_mean_ssim_y"]
        assert (e.hub.repo_id, e.hub.filename, e.hub.revision) == (REPO, f"fdiwn_x{s}.safetensors", "main")
        assert "no license" in e.license and "attribution" in e.license


def test_manifest_in_use_is_the_repository_file():
    assert manifest_path().read_bytes() == (ROOT / "weights_manifest.json").read_bytes()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(schema=2), "schema 1"),
        (lambda m: m["models"]["fdiwn-x4"].update(sha256="abc"), "models.fdiwn-x4.sha256"),
        (lambda m: m["models"]["fdiwn-x4"]["hub"].pop("filename"), "models.fdiwn-x4.hub.filename"),
        (lambda m: m["models"]["fdiwn-x4"].update(size=True), "models.fdiwn-x4.size"),
        (lambda m: m["models"]["fdiwn-x4"]["upstream"].update(url="http://x/y.pt"), "https url"),
        (lambda m: m["models"]["fdiwn-x4"]["metrics"].pop("set5_psnr_y"), "models.fdiwn-x4.metrics"),
        (lambda m: m["models"]["fdiwn-x4"].update(scale=3), "'fdiwn' x3 twice"),
    ],
)
def test_manifest_validation_names_the_bad_field(edit, message):
    raw = json.loads((ROOT / "weights_manifest.json").read_text())
    bad = copy.deepcopy(raw)
    edit(bad)
    with pytest.raises(ValueError, match=message):
        parse_manifest(bad)


def test_fdiwn_m_has_no_pretrained_weights():
    with pytest.raises(WeightsError, match=r"no pretrained weights exist for variant 'fdiwn-m'.*weights=PATH"):
        load_model(4, "fdiwn-m")


# --- download, cache, offline -----------------------------------------------------------------------


def test_hub_download_gives_golden_outputs_then_loads_with_no_request(hub, tmp_path, golden, monkeypatch):
    cache = tmp_path / "cache"
    path = resolve_weights(4, "fdiwn", cache_dir=cache, endpoint=hub.url)
    assert (hub.count("HEAD"), hub.count("GET")) == (1, 1)
    assert path.parent == cache / "weights" and sha256_file(path) == MANIFEST.entry(4, "fdiwn").sha256
    assert resolve_weights(4, "fdiwn", cache_dir=cache, endpoint=hub.url) == path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert golden_diff(load_model(4, cache_dir=cache), golden) <= 1e-3
    assert len(hub.requests) == 2  # the first HEAD and GET, nothing since


def test_offline_falls_back_to_the_huggingface_cache(hub, tmp_path):
    cache = tmp_path / "cache"
    path = resolve_weights(3, "fdiwn", cache_dir=cache, endpoint=hub.url)
    path.unlink()  # our copy gone, the Hub's cache (cache/hub) still holds the file
    again = resolve_weights(3, "fdiwn", cache_dir=cache, offline=True)
    assert again == path and sha256_file(again) == MANIFEST.entry(3, "fdiwn").sha256
    assert hub.count("GET") == 1


def test_corrupted_cache_file_is_replaced(hub, tmp_path):
    cache = tmp_path / "cache"
    path = resolve_weights(2, "fdiwn", cache_dir=cache, endpoint=hub.url)
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    assert resolve_weights(2, "fdiwn", cache_dir=cache, endpoint=hub.url) == path
    assert sha256_file(path) == MANIFEST.entry(2, "fdiwn").sha256


def test_hub_404_falls_back_to_upstream_pt(empty_hub, upstream, tmp_path, golden):
    cache = tmp_path / "cache"
    path = resolve_weights(2, "fdiwn", cache_dir=cache, endpoint=empty_hub.url)
    assert empty_hub.count("HEAD") == 1 and upstream.count("GET", "FDIWNx2/model/model_best.pt") == 1
    assert sha256_file(path) == MANIFEST.entry(2, "fdiwn").sha256  # converted here, byte-identical to the Hub's
    assert golden_diff(load_model(2, cache_dir=cache), golden) <= 1e-3
    assert [p.name for p in cached_files(cache)] == [path.name]  # the .pt and temporaries are gone


@pytest.mark.parametrize("source", ["hub", "upstream"])
def test_corrupted_bytes_raise_integrity_error_and_cache_nothing(source, converted, authors_pt, upstream, tmp_path):
    entry = MANIFEST.entry(2, "fdiwn")
    with LocalHub() as h:
        if source == "hub":
            data = bytearray(converted[2].read_bytes())
            h.add_file(REPO, entry.hub.filename, bytes(data[:-1]) + b"\1")
            expected = entry.sha256
        else:
            pt = authors_pt(2).read_bytes()
            upstream.serve(urlsplit(entry.upstream.url).path, pt[:-1] + bytes([pt[-1] ^ 1]))
            expected = entry.upstream.sha256
        with pytest.raises(IntegrityError, match=f"expected {expected}, got [0-9a-f]{{64}}") as err:
            resolve_weights(2, "fdiwn", cache_dir=tmp_path / "cache", endpoint=h.url)
    assert "sha256 mismatch" in str(err.value)
    assert cached_files(tmp_path / "cache") == []
    assert upstream.count("GET") == (source == "upstream")  # a bad Hub file is an error, not a cue to fall back


def test_transfer_cut_short_is_retried_then_fails_clearly(empty_hub, upstream, tmp_path):
    upstream.cut_short = 100_000
    with pytest.raises(WeightsError, match=rf"failed after {ATTEMPTS} attempts: transfer cut short") as err:
        resolve_weights(4, "fdiwn", cache_dir=tmp_path / "cache", endpoint=empty_hub.url)
    assert "FDIWN_SR_UPSTREAM_MIRROR" in str(err.value)
    assert upstream.count("GET") == ATTEMPTS
    assert cached_files(tmp_path / "cache") == []


def test_transfer_cut_short_once_is_retried_and_succeeds(empty_hub, upstream, tmp_path):
    upstream.cut_short, upstream.cut_short_times = 100_000, 1
    path = resolve_weights(4, "fdiwn", cache_dir=tmp_path / "cache", endpoint=empty_hub.url)
    assert upstream.count("GET") == 2 and sha256_file(path) == MANIFEST.entry(4, "fdiwn").sha256


@pytest.mark.parametrize("how", ["offline=True", "HF_HUB_OFFLINE", "FDIWN_SR_OFFLINE"])
def test_offline_with_empty_cache_fails_at_once_with_the_fix(how, monkeypatch, tmp_path):
    offline = True if how == "offline=True" else None
    if offline is None:
        monkeypatch.setenv(how, "1")
    home = tmp_path / "default-home"
    start = time.monotonic()
    with pytest.raises(WeightsError) as err:
        load_model(4, offline=offline)
    assert time.monotonic() - start < 2.0
    message = str(err.value)
    for needle in ("fdiwn_x4.safetensors", str(home), "HF_HUB_OFFLINE", "FDIWN_SR_OFFLINE", "FDIWN_SR_HOME"):
        assert needle in message
    assert "fdiwn-sr download --scale 4" in message and "weights=PATH" in message
    assert how.split("=")[0] in message


TWO_PROCESSES = """
import sys, time
from pathlib import Path
from fdiwn_sr import load_model
ready = Path(sys.argv[1])
ready.joinpath(sys.argv[2]).touch()
while len(list(ready.iterdir())) < 2:
    time.sleep(0.01)
start = time.time()
load_model(2)
print(start, time.time())
"""


def test_two_processes_loading_at_once_download_once(hub, tmp_path):
    hub.delay = 1.0
    ready = tmp_path / "ready"
    ready.mkdir()
    env = subprocess_env(hub, tmp_path)
    procs = [
        subprocess.Popen([sys.executable, "-c", TWO_PROCESSES, str(ready), str(i)], env=env, stdout=subprocess.PIPE)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    (s1, e1), (s2, e2) = (map(float, o.split()) for o in outs)
    assert max(s1, s2) < min(e1, e2)  # they really overlapped
    assert (hub.count("HEAD"), hub.count("GET", "fdiwn_x2.safetensors")) == (1, 1)


# --- publishing and the command line ------------------------------------------------------------------


def test_publish_dry_run_serves_and_loads_through_load_model(reference_dir, tmp_path, golden, capsys):
    out = tmp_path / "repo"
    source = reference_dir / "upstream-checkpoints"
    assert cli(["publish", "--repo-id", REPO, "--source", str(source), "--dry-run", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == REPO_FILES
    config = json.loads((out / "config.json").read_text())
    card = (out / "README.md").read_text()
    for e in MANIFEST.models.values():
        assert sha256_file(out / e.hub.filename) == config["models"][e.name]["sha256"] == e.sha256
        assert f"| x{e.scale} | {e.metrics['set5_psnr_y']:.4f} / {e.metrics['set5_ssim_y']:.4f} |" in card
    assert "Gao" in card and AUTHORS_REPO in card and MANIFEST.entry(4, "fdiwn").license in card
    assert card.startswith("---\nlicense: other\n")

    cache = tmp_path / "cache"
    with LocalHub() as h:
        for f in out.iterdir():
            h.add_file(REPO, f.name, f.read_bytes())
        assert cli(["download", "--scale", "4", "--scale", "2", "--cache-dir", str(cache), "--endpoint", h.url]) == 0
        assert h.count("GET") == 2
    printed = capsys.readouterr().out
    assert "x2: " in printed and "x4: " in printed
    assert golden_diff(load_model(4, cache_dir=cache, offline=True), golden) <= 1e-3


def test_publish_uploads_one_commit_that_resolves_to_the_manifest_files(reference_dir, tmp_path):
    with LocalHub() as h:
        url = publish(REPO, source=reference_dir / "upstream-checkpoints", endpoint=h.url, token="hf_test")
        assert url.startswith(f"{h.url}/{REPO}/commit/")
        assert sorted(h.repos[REPO]) == REPO_FILES
        assert h.count("POST", "/commit/main") == 1
        for e in MANIFEST.models.values():  # the bytes the manifest promises (the dry-run test runs them)
            path = resolve_weights(e.scale, e.variant, cache_dir=tmp_path / "cache", endpoint=h.url)
            assert sha256_file(path) == e.sha256


def test_publish_refuses_a_wrong_source_and_a_used_folder(reference_dir, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "FDIWNx2.pt").write_bytes((reference_dir / "upstream-checkpoints" / "FDIWNx3.pt").read_bytes())
    with pytest.raises(IntegrityError, match="authors' checkpoint"):
        convert_verified(wrong / "FDIWNx2.pt", MANIFEST.entry(2, "fdiwn"), tmp_path / "out" / "x.safetensors")
    assert not (tmp_path / "out" / "x.safetensors").exists()
    assert cli(["publish", "--repo-id", REPO, "--source", str(wrong), "--dry-run", str(wrong)]) == 2


def test_example_pretrained_offline_runs(hub, tmp_path, reference_dir):
    out = tmp_path / "butterfly_x4.png"
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "pretrained_offline.py"),
        "--scale", "4",
        "--input", str(reference_dir / "set5" / "x4" / "LR" / "butterfly.png"),
        "--output", str(out),
        "--airgap-dir", str(tmp_path / "airgap"),
    ]  # fmt: skip
    run = subprocess.run(cmd, env=subprocess_env(hub, tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert hub.count("GET", "fdiwn_x4.safetensors") == 1
    ours = np.asarray(Image.open(out), dtype=np.int16)
    theirs = np.asarray(Image.open(reference_dir / "golden" / "set5_x4_official_sr" / "butterfly.png"), dtype=np.int16)
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())


# --- cache and download faults (issue 12): each names the folder or host and the fix, and costs no retries ---
# A read-only cache is made the way that stops root too: a read-only bind mount in a private mount
# namespace (unshare -m), or a path under a plain file; a full disk is a 1 MiB tmpfs in such a namespace.


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


NAMESPACES = _namespaces_work()
needs_namespaces = pytest.mark.skipif(not NAMESPACES, reason="unshare -m (a private mount namespace) is not allowed")


def in_namespace(setup: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``argv`` after the shell ``setup`` (mounts) in a private mount namespace: nothing leaks out."""
    script = f'set -e; {setup}; exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def cli_env(tmp_path: Path, home: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FDIWN_SR_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home / "hf"), FDIWN_SR_HOME=str(home), NO_PROXY="127.0.0.1")
    return env


@needs_namespaces
def test_read_only_cache_from_the_cli_names_the_folder_and_the_fix(hub, tmp_path):
    from PIL import Image

    home = tmp_path / "cache"
    home.mkdir()
    Image.new("RGB", (8, 8), "gray").save(tmp_path / "a.png")
    argv = [sys.executable, "-m", "fdiwn_sr", "upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]
    done = in_namespace(
        f"mount --bind {home} {home}; mount -o remount,bind,ro {home}", argv, cli_env(tmp_path, home, hub.url)
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 2, done.stderr
    assert f"cannot write the weights cache at {home / 'weights'}: Read-only file system" in lines[0]
    assert "FDIWN_SR_HOME" in lines[1] and "--weights FILE" in lines[1] and "Traceback" not in done.stderr
    assert len(hub.requests) == 0  # found before any download


@needs_namespaces
def test_full_disk_names_the_folder_and_leaves_nothing(hub, tmp_path):
    home = tmp_path / "small"
    home.mkdir()
    code = (
        "from fdiwn_sr.weights import resolve_weights\n"
        f"resolve_weights(2, 'fdiwn', cache_dir={str(home)!r}, endpoint={hub.url!r})"
    )
    done = in_namespace(
        f"mount -t tmpfs -o size=1m tmpfs {home}; cd {home}",
        [sys.executable, "-c", code + "\nimport os; print(sorted(os.listdir('weights')))"],
        cli_env(tmp_path, home, hub.url),
    )
    assert done.returncode == 1 and "no space left on the device" in done.stderr, done.stderr
    assert f"cannot write the weights cache at {home}" in done.stderr and "FDIWN_SR_HOME" in done.stderr


@pytest.mark.parametrize("kind", ["under a file", "a plain file", "a dangling link"])
def test_cache_that_cannot_be_a_folder(kind, hub, tmp_path):
    (tmp_path / "file").write_text("a plain file")
    if kind == "under a file":
        cache, blame, why = tmp_path / "file" / "cache", tmp_path / "file", "it is a file, not a folder"
    elif kind == "a plain file":
        cache, blame, why = tmp_path / "file", tmp_path / "file", "it is a file, not a folder"
    else:
        (tmp_path / "link").symlink_to(tmp_path / "gone")
        cache, blame, why = tmp_path / "link", tmp_path / "link", f"it is a link to {tmp_path / 'gone'}, which does not"
    with pytest.raises(WeightsError) as err:
        resolve_weights(2, "fdiwn", cache_dir=cache, endpoint=hub.url)
    assert f"cannot write the weights cache at {blame}: {why}" in str(err.value)
    assert "Fix: set FDIWN_SR_HOME (or cache_dir=) to a writable folder" in str(err.value)
    assert "--weights FILE" in err.value.cli_fix and len(hub.requests) == 0


def test_corrupted_blob_in_the_huggingface_cache_is_replaced_in_the_same_run(hub, tmp_path):
    cache = tmp_path / "cache"
    path = resolve_weights(2, "fdiwn", cache_dir=cache, endpoint=hub.url)
    (blob,) = (p for p in (cache / "hub").rglob("*") if p.parent.name == "blobs")
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    path.unlink()
    assert resolve_weights(2, "fdiwn", cache_dir=cache, endpoint=hub.url) == path  # no error, this run
    assert sha256_file(path) == MANIFEST.entry(2, "fdiwn").sha256 and hub.count("GET") == 2
    assert sha256_file(blob) == MANIFEST.entry(2, "fdiwn").sha256


def test_offline_error_says_a_cached_file_is_damaged(hub, tmp_path):
    cache = tmp_path / "cache"
    path = resolve_weights(2, "fdiwn", cache_dir=cache, endpoint=hub.url)
    path.write_bytes(b"damaged")
    shutil.rmtree(cache / "hub")
    with pytest.raises(WeightsError, match=rf"offline mode is on \(offline=True\): {path} does not match its sha256"):
        resolve_weights(2, "fdiwn", cache_dir=cache, offline=True)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("endpoint", [f"http://127.0.0.1:{closed_port()}", "http://no-such-host.invalid"])
def test_a_hub_that_cannot_be_reached_goes_to_the_fallback_without_retries(endpoint, upstream, tmp_path, caplog):
    path = resolve_weights(2, "fdiwn", cache_dir=tmp_path / "cache", endpoint=endpoint)
    assert sha256_file(path) == MANIFEST.entry(2, "fdiwn").sha256
    why = "refused the connection" if "127.0.0.1" in endpoint else "cannot resolve no-such-host.invalid"
    assert "the Hub cannot be reached: " in caplog.text and why in caplog.text  # our probe, not ~23 s of retries


KILLED = """
import sys
from fdiwn_sr.weights import resolve_weights
resolve_weights(2, "fdiwn", cache_dir=sys.argv[1], endpoint=sys.argv[2])
"""


def test_a_killed_download_leaves_nothing_after_the_next_run(empty_hub, upstream, tmp_path):
    cache = tmp_path / "cache"
    upstream.delay = 30.0  # the body trickles in: time to kill the process mid-download
    env = {**os.environ, "FDIWN_SR_UPSTREAM_MIRROR": upstream.url}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(cache), empty_hub.url], env=env)
    deadline = time.monotonic() + 120
    while not any(".tmp" in p.name for p in cache.rglob("*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [p for p in (cache / "weights").iterdir() if not p.name.endswith(".lock")]
    assert left and all(p.name.startswith(".fdiwn_x2") for p in left)  # the killed run's temporaries
    upstream.delay = 0.0
    path = resolve_weights(2, "fdiwn", cache_dir=cache, endpoint=empty_hub.url)
    assert sorted(p.name for p in (cache / "weights").iterdir() if not p.name.endswith(".lock")) == [path.name]
    assert [p.name for p in cached_files(cache)] == [path.name]

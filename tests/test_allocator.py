"""Host allocator tuning: opt-in for library users, on in our own command, never over the user's own setting.

Each check runs in a fresh interpreter: malloc settings are process-wide and
can only be observed, never undone. The child spies on every ``mallopt`` and
``os.umask`` call (wrapped ctypes lookups and ``os.umask``) and probes glibc's
state itself: a 64 MiB block is above glibc's largest dynamic mmap threshold
(32 MiB), so untuned malloc serves it with ``mmap`` (``mallinfo2().hblks`` goes
up) and tuned malloc from the heap.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from copy import deepcopy
from pathlib import Path

import pytest
from PIL import Image

from fdiwn_sr import allocator

GLIBC = pytest.mark.skipif(allocator.glibc() is None, reason="glibc's mallopt only")

SPY = """
import ctypes, json, os, signal, sys, warnings

CALLS = []
_lookup, _item, _umask = ctypes.CDLL.__getattr__, ctypes.CDLL.__getitem__, os.umask


def _spy_lookup(self, name):
    CALLS.append(name)
    return _lookup(self, name)


def _spy_item(self, name):
    CALLS.append(name)
    return _item(self, name)


def _spy_umask(mask):
    CALLS.append("umask")
    return _umask(mask)


ctypes.CDLL.__getattr__, ctypes.CDLL.__getitem__, os.umask = _spy_lookup, _spy_item, _spy_umask


def heap_serves_64mib():
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Info, ctypes.c_void_p, [ctypes.c_void_p]
    before = libc.mallinfo2().hblks
    block = libc.malloc(64 << 20)
    mapped = libc.mallinfo2().hblks - before
    libc.free(block)
    return mapped == 0


def report(**extra):
    print(json.dumps({"mallopt": CALLS.count("mallopt"), "umask": CALLS.count("umask"),
                      "heap_serves_64mib": heap_serves_64mib(), **extra}))
"""

STATE = """
import requests  # noqa: F401 - requests and urllib3 add warning filters of their own on import: not ours
import torch


def umask_now():
    for line in open("/proc/self/status"):
        if line.startswith("Umask:"):
            return line.split()[1]


def state():
    handlers = {}
    for s in signal.valid_signals():
        try:
            handlers[str(s)] = repr(signal.getsignal(s))
        except (ValueError, OSError):
            pass
    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.enabled,
        "cudnn": [torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic],
        "matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "grad": torch.is_grad_enabled(),
        "default_dtype": str(torch.get_default_dtype()),
        "anomaly": torch.is_anomaly_enabled(),
        "warning_filters": [repr(f) for f in warnings.filters],
        "signals": handlers,
        "environ": dict(os.environ),
        "umask": umask_now(),
        "excepthook": repr(sys.excepthook),
    }
"""


def _child(code: str, env: dict[str, str] | None = None, *, prelude: str = "") -> dict:
    base = {k: v for k, v in os.environ.items() if k != allocator.ENV and not k.startswith("MALLOC_")}
    base.pop("GLIBC_TUNABLES", None)
    script = SPY + prelude + textwrap.dedent(code)
    out = subprocess.run(
        [sys.executable, "-c", script], env={**base, **(env or {})}, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("guest") / "small.png"
    Image.effect_noise((24, 20), 60).convert("RGB").save(path)
    return path


@GLIBC
def test_the_probe_sees_tuning_when_it_is_asked_for():
    # The control for the tests below: an explicit opt-in is visible to the spy and to the probe.
    plain = _child("report()")
    tuned = _child("from fdiwn_sr import allocator\nreport(tuned=allocator.keep_freed_memory())")
    assert plain == {"mallopt": 0, "umask": 0, "heap_serves_64mib": False}
    assert tuned["tuned"] and tuned["mallopt"] >= 2 and tuned["heap_serves_64mib"], tuned


@GLIBC
def test_import_load_model_and_upscale_leave_the_host_process_alone(authors_pt, image):
    code = f"""
    before = state()
    import fdiwn_sr
    upscaler = fdiwn_sr.load_model(2, weights={str(authors_pt(2))!r}, device="cpu")
    out = fdiwn_sr.upscale({str(image)!r}, 2, weights={str(authors_pt(2))!r}, device="cpu")
    upscaler.upscale({str(image)!r})
    after = state()
    report(changed=sorted(k for k in before if before[k] != after[k]), backend=upscaler.backend, size=list(out.size))
    """
    result = _child(code, prelude=STATE)
    assert result["size"] == [48, 40]  # the calls really ran
    assert result["changed"] == [], result
    assert result["mallopt"] == 0 and not result["heap_serves_64mib"], result
    assert result["umask"] == 0, "the umask was read by setting it (process-wide, not thread-safe)"


@GLIBC
def test_tuning_whenever_a_cpu_backend_is_built_is_an_environment_opt_in(authors_pt):
    code = f"""
    import fdiwn_sr
    fdiwn_sr.load_model(2, weights={str(authors_pt(2))!r}, device="cpu")
    report()
    """
    assert _child(code, {allocator.ENV: "1"})["heap_serves_64mib"]
    assert not _child(code, {allocator.ENV: "0"})["heap_serves_64mib"]


@GLIBC
@pytest.mark.parametrize(
    "env, tuned",
    [
        ({}, True),  # the command owns its process
        ({allocator.ENV: "0"}, False),
        ({"MALLOC_ARENA_MAX": "2"}, False),  # the user's own malloc settings are theirs
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=4194304"}, False),
    ],
)
def test_the_command_tunes_malloc_unless_told_otherwise(authors_pt, image, tmp_path, env, tuned):
    code = f"""
    from fdiwn_sr.cli import main
    status = main(["upscale", {str(image)!r}, "-o", {str(tmp_path / "out.png")!r}, "--scale", "2",
                   "--weights", {str(authors_pt(2))!r}, "--device", "cpu"])
    report(status=status)
    """
    result = _child(code, env)
    assert result["status"] == 0 and (tmp_path / "out.png").is_file()
    assert result["heap_serves_64mib"] is tuned, result
    assert (result["mallopt"] > 0) is tuned, result


CHILD_FAULTS = """
import resource, torch
from fdiwn_sr.backends import make_runner
from fdiwn_sr.network import FDIWN
run = make_runner(FDIWN(2, "fdiwn-m"), torch.device("cpu"), None, "torch")
x = torch.rand(1, 3, 128, 128) * 255
faults = []
with torch.inference_mode():
    run(x)
    for _ in range(7):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        run(x)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
report(faults=faults, held=run.reserve.held)
"""


@pytest.mark.slow
@GLIBC
def test_freed_feature_maps_are_reused_with_and_without_tuning_malloc():
    tuned = _child(CHILD_FAULTS, {allocator.ENV: "1"})
    default, off = _child(CHILD_FAULTS), _child(CHILD_FAULTS, {allocator.ENV: "0"})
    assert tuned["mallopt"] >= 2 and default["mallopt"] == 0 and off["mallopt"] == 0
    # The library default holds a heap reserve instead; tuned malloc has no need of one; "0" touches nothing.
    assert (tuned["held"], default["held"], off["held"]) == (False, True, False)
    # Without either, freed feature maps go back to the system and are faulted in again page by page. Single
    # calls vary (glibc's adaptive thresholds, the thread pool's scratch), so the check is on seven calls
    # together (one run here: 2.3k pages in all tuned, 1.8k with the reserve, 318k with neither).
    assert sum(tuned["faults"]) < sum(off["faults"]) / 5, (tuned, off)
    assert sum(default["faults"]) < sum(off["faults"]) / 5, (default, off)


RESERVE = """
import gc, threading, torch
from fdiwn_sr.allocator import _heap_calls
from fdiwn_sr.backends import make_runner
from fdiwn_sr.network import FDIWN
heap = lambda: _heap_calls().mallinfo2().arena  # bytes of glibc's heaps, every thread's together
x = torch.rand(1, 3, 256, 256) * 255
run = make_runner(FDIWN(2, "fdiwn-m"), torch.device("cpu"), None, "torch-fused")
run(x)
in_main, size = run.reserve.held, run.reserve.size
thread = threading.Thread(target=run, args=(x,))  # another thread: the reserve moves to that thread's heap
thread.start()
thread.join()
in_thread, before = run.reserve.held, heap()
del run
gc.collect()
report(in_main=in_main, in_thread=in_thread, size=size, given_back=before - heap())
"""


@GLIBC
def test_a_runner_holds_its_reserve_while_it_lives_and_gives_it_back():
    result, off = _child(RESERVE), _child(RESERVE, {allocator.ENV: "0"})
    assert result["in_main"] and result["in_thread"], result
    assert not off["in_main"] and not off["in_thread"], off
    assert result["size"] == int(3.5 * 1024 * 256 * 256)  # what a call needs: 3.5 KiB per input pixel
    # Freeing the runner hands the reserve's heap back to the system (glibc trims it): it was held until then,
    # and nothing is left tuned or held behind it (measured: 226 MB more than without a reserve, 235 MB asked).
    assert result["given_back"] - off["given_back"] > 0.5 * result["size"], (result, off)


class RefusingLibc:
    """A glibc older than 2.26, as far as mallopt goes: mmap thresholds above 32 MiB are refused (returns 0)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.mallopt = self

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return int(not (param == allocator._M_MMAP_THRESHOLD and value > allocator.OLD_GLIBC_MMAP_MAX))


def test_each_threshold_is_set_and_checked_on_its_own(monkeypatch):
    libc = RefusingLibc()
    monkeypatch.setattr(allocator, "glibc", lambda: libc)
    monkeypatch.setattr(allocator, "_tuned", False)  # restored afterwards: the fake tuning must not leak
    monkeypatch.delenv(allocator.ENV, raising=False)
    for name in [k for k in os.environ if k.startswith("MALLOC_")] + ["GLIBC_TUNABLES"]:
        monkeypatch.delenv(name, raising=False)
    allocator.keep_freed_memory.cache_clear()
    try:
        assert allocator.keep_freed_memory()
    finally:
        allocator.keep_freed_memory.cache_clear()
    mmap, trim = allocator._M_MMAP_THRESHOLD, allocator._M_TRIM_THRESHOLD
    # The refused 1 GiB mmap threshold falls back to 32 MiB, and the trim threshold is still raised.
    assert libc.calls == [
        (mmap, allocator.THRESHOLD),
        (mmap, allocator.OLD_GLIBC_MMAP_MAX),
        (trim, allocator.THRESHOLD),
    ]


def test_a_reserve_with_nothing_to_hold_holds_nothing():
    # A runner off the CPU has a limit of 0; its calls must run as if there were no reserve (this raised
    # IndexError on the first call of a CUDA TorchRunner).
    for limit, asked in ((0, 1 << 20), (1 << 20, 0)):
        reserve = allocator.HeapReserve(limit)
        reserve.ensure(asked)
        assert not reserve.held and reserve.size == 0


def test_a_copied_reserve_starts_empty():
    reserve = allocator.HeapReserve(1 << 20)
    reserve.ensure(1 << 20)
    for copy in (pickle.loads(pickle.dumps(reserve)), deepcopy(reserve)):
        assert copy.limit == reserve.limit and copy.size == 0 and not copy.held
    reserve.release()
    assert not reserve.held and reserve.size == 0

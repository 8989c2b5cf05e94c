"""Host allocator tuning: freed feature maps are reused instead of faulted in afresh (glibc only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fdiwn_sr import allocator

CHILD = """
import json, resource, sys, torch
from fdiwn_sr import allocator
from fdiwn_sr.backends import make_runner
from fdiwn_sr.network import FDIWN
run = make_runner(FDIWN(2, "fdiwn-m"), torch.device("cpu"), None, "torch")
x = torch.rand(1, 3, 128, 128) * 255
with torch.inference_mode():
    run(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    run(x)
print(json.dumps({"tuned": allocator.keep_freed_memory(),
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _child(env_value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != allocator.ENV}
    if env_value is not None:
        env[allocator.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator.glibc() is None, reason="glibc's mallopt only")
def test_tuned_malloc_reuses_freed_feature_maps():
    tuned, plain = _child(None), _child("0")
    assert tuned["tuned"] and not plain["tuned"]
    # Untuned, each fresh 128x128 feature map is faulted in page by page; tuned, the heap serves it again.
    assert plain["faults"] > 2000, plain
    assert tuned["faults"] < plain["faults"] / 10, (tuned, plain)

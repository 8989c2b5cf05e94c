"""``import fdiwn_sr`` and ``fdiwn-sr upscale`` load only the inference core: no training loop, data
pipeline, release tooling, evaluation or ONNX (ours or the onnx packages). Checked in fresh
interpreters, through sys.modules; training/data.py is checked statically not to reach inference code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fdiwn_sr.checkpoints import save_safetensors
from fdiwn_sr.network import FDIWN

PACKAGE = Path(__file__).resolve().parent.parent / "fdiwn_sr"
HEAVY = (
    "fdiwn_sr.training.trainer",
    "fdiwn_sr.training.data",
    "fdiwn_sr.training.distributed",
    "fdiwn_sr.publish",
    "fdiwn_sr.onnx_export",
    "fdiwn_sr.evaluate",
    "onnx",
    "onnxruntime",
)
REPORT = "import json, sys; print(json.dumps(sorted(sys.modules)))"


def loaded_after(code: str, *args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}", *args], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_fdiwn_sr_loads_no_training_publish_evaluation_or_onnx():
    loaded = loaded_after("import fdiwn_sr")
    assert "fdiwn_sr.upscaler" in loaded  # the check can see our modules
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_upscale_command_loads_no_training_publish_evaluation_or_onnx(tmp_path):
    torch.manual_seed(0)
    save_safetensors(FDIWN(2), tmp_path / "w.safetensors")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    code = "import sys; from fdiwn_sr.cli import main; assert main(sys.argv[1:]) == 0"
    args = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--scale", "2"]
    loaded = loaded_after(code, *args, "--weights", str(tmp_path / "w.safetensors"), "--device", "cpu")
    assert Image.open(tmp_path / "out.png").size == (20, 24)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_training_names_still_load_on_use():
    loaded = loaded_after("from fdiwn_sr.training import train, PatchDataset")
    assert {"fdiwn_sr.training.trainer", "fdiwn_sr.training.data"} <= loaded


def _imports(module: Path) -> set[str]:
    """The fdiwn_sr modules ``module`` imports itself (absolute names; package __init__ side effects aside)."""
    parts = module.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names = [f"{target}.{a.name}" for a in node.names] + [target]
            found.update(n for n in names if _source(n) is not None)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if _source(a.name) is not None)
    return found


def _source(name: str) -> Path | None:
    path = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file() and name.startswith("fdiwn_sr"):
            return candidate
    return None


def test_training_data_reaches_no_inference_module():
    """All that training/data.py imports, transitively: no upscaler, backend, tiling or fused network."""
    seen, todo = set(), ["fdiwn_sr.training.data"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imports(_source(name)) - {"fdiwn_sr", "fdiwn_sr.training"})
    inference = {"fdiwn_sr.upscaler", "fdiwn_sr.backends", "fdiwn_sr.tiling", "fdiwn_sr.network.inference",
                 "fdiwn_sr.allocator", "fdiwn_sr.evaluate"}  # fmt: skip
    assert "fdiwn_sr.images" in seen  # the walk follows relative imports
    assert not seen & inference, sorted(seen & inference)

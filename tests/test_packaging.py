"""The built wheel is complete: manifest, py.typed, a working console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)], check=True,
                   capture_output=True)  # fmt: skip
    (whl,) = out.glob("fdiwn_sr-*.whl")
    return whl


def test_wheel_holds_manifest_and_py_typed(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "fdiwn_sr/py.typed" in names
    assert "fdiwn_sr/weights_manifest.json" in names
    packaged = json.loads(zipfile.ZipFile(wheel).read("fdiwn_sr/weights_manifest.json"))
    assert packaged == json.loads((ROOT / "weights_manifest.json").read_text())
    assert not any(n.endswith((".pt", ".pth", ".safetensors", ".onnx")) for n in names)


def test_installed_wheel_imports_and_runs_the_cli(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import fdiwn_sr, sys; print(fdiwn_sr.__file__); print(fdiwn_sr.__version__)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    path, version = r.stdout.split()
    assert Path(path).is_relative_to(target)
    r = subprocess.run([str(target / "bin" / "fdiwn-sr"), "--version"], env=env, capture_output=True, text=True,
                       check=True, cwd=tmp_path)  # fmt: skip
    assert r.stdout.strip() == f"fdiwn-sr {version}"

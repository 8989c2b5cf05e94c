"""ONNX export: the file ONNX Runtime runs computes the training form's function, at any size and batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fdiwn_sr.checkpoints import load_network
from fdiwn_sr.cli import main
from fdiwn_sr.onnx_export import export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fast_inference.py"


@pytest.fixture(scope="module")
def exported(authors_pt, tmp_path_factory) -> tuple[Path, str]:
    """The x4 network exported by the example script (which also runs the file); its path and printout."""
    path = tmp_path_factory.mktemp("onnx") / "fdiwn_x4.onnx"
    cmd = [sys.executable, str(EXAMPLE), "--weights", str(authors_pt(4)), "--onnx", str(path)]
    return path, subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def onnx_runner(path: Path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"lr": x.numpy()})[0])


def test_example_reports_backend_and_a_matching_onnx_run(exported):
    path, out = exported
    assert "default backend: torch-fused" in out and "8-bit outputs: max difference" in out
    assert f"wrote {path}: output (1, 3, 384, 512)" in out
    # Two backends, each within float rounding (about 1e-3 at this size) of the training form.
    assert float(out.split("| = ")[1].split()[0]) <= 2e-3


def test_file_describes_itself_and_has_dynamic_batch_height_width(exported):
    model = onnx.load(str(exported[0]))
    assert {p.key: p.value for p in model.metadata_props} == {"scale": "4", "variant": "fdiwn", "value_range": "0..255"}
    assert model.producer_name == "fdiwn-sr"
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "lr" and out.name == "sr"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert not any(n.op_type == "InstanceNormalization" for n in model.graph.node), "the folded, fused form"


def test_onnx_matches_training_form_on_golden_and_other_shapes(exported, authors_pt, reference_dir: Path):
    training = load_network(authors_pt(4), 4).eval()
    golden = load_file(reference_dir / "golden" / "official_x4.safetensors")
    x = torch.rand(2, 3, 17, 26, generator=torch.Generator().manual_seed(1)) * 255
    run = onnx_runner(exported[0])
    for inputs, tolerance in ((golden["input_crop"], 1e-3), (golden["input_noise"], 5e-3), (x, 5e-3)):
        with torch.inference_mode():
            expected = training(inputs)
        y = run(inputs)
        assert y.shape == expected.shape
        assert (y - expected).abs().max().item() <= tolerance


def test_cli_export_writes_a_runnable_file(authors_pt, tmp_path, capsys):
    out = tmp_path / "x2.onnx"
    assert main(["export-onnx", str(out), "--scale", "2", "--weights", str(authors_pt(2))]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert onnx_runner(out)(torch.full((1, 3, 8, 9), 128.0)).shape == (1, 3, 16, 18)
    assert [p.name for p in tmp_path.iterdir()] == ["x2.onnx"], "no temporary files left behind"


def test_bad_requests_fail_clearly_without_writing(authors_pt, tmp_path, capsys, monkeypatch):
    model = load_network(authors_pt(4), 4)
    with pytest.raises(ValueError, match="opset must be between 13 and 20, got 9"):
        export_onnx(model, tmp_path / "a.onnx", opset=9)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        export_onnx(model, tmp_path)
    with pytest.raises(TypeError, match="expected an FDIWN, got Linear"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "b.onnx")
    assert main(["export-onnx", str(tmp_path / "c.onnx"), "--scale", "3", "--weights", str(authors_pt(4))]) == 2
    assert "x4, but x3 was requested" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the optional extra were not installed
    assert main(["export-onnx", str(tmp_path / "d.onnx"), "--weights", str(authors_pt(4))]) == 2
    assert "pip install 'fdiwn-sr[onnx]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

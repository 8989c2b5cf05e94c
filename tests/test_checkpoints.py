"""Conversion of the authors' checkpoints, the key styles people re-save with, and bad files."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fdiwn_sr import CheckpointError, load_model
from fdiwn_sr.checkpoints import convert, detect, load_network, read_checkpoint
from fdiwn_sr.network import FDIWN


@pytest.fixture(scope="module")
def authors_x4(authors_pt):
    return torch.load(authors_pt(4), map_location="cpu", weights_only=True)


def test_conversion_maps_every_key_and_writes_metadata(converted, authors_pt):
    path = converted[4]
    assert set(load_file(path)) == set(FDIWN(4).state_dict())
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "fdiwn-sr"
    assert meta["format_version"] == "1"
    assert meta["variant"] == "fdiwn"
    assert meta["scale"] == "4"
    expected_sha = (authors_pt(4).parent / "SHA256SUMS").read_text().split("FDIWNx4.pt")[0].split()[-1]
    assert meta["source_sha256"] == expected_sha


def test_conversion_is_byte_stable_across_processes(authors_pt, tmp_path, converted):
    out = tmp_path / "again.safetensors"
    code = "import sys; from fdiwn_sr.checkpoints import convert; convert(sys.argv[1], sys.argv[2], 4)"
    subprocess.run([sys.executable, "-c", code, str(authors_pt(4)), str(out)], check=True)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(converted[4].read_bytes()).digest()


def _reference_output(model: FDIWN) -> torch.Tensor:
    x = torch.arange(3 * 9 * 11, dtype=torch.float32).reshape(1, 3, 9, 11) % 255
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("style", ["parametrizations", "dataparallel", "both"])
def test_reader_accepts_resaved_key_styles(style, authors_x4, authors_pt, tmp_path):
    state = OrderedDict()
    for k, v in authors_x4.items():
        if style in ("parametrizations", "both"):
            k = k.replace(".weight_g", ".parametrizations.weight.original0")
            k = k.replace(".weight_v", ".parametrizations.weight.original1")
        if style in ("dataparallel", "both"):
            k = "module." + k
        state[k] = v
    path = tmp_path / "resaved.pth"
    torch.save(state, path)
    expected = _reference_output(load_network(authors_pt(4)))
    assert torch.equal(_reference_output(load_network(path, 4)), expected)
    # ... and as a safetensors file holding the authors' layout
    st = tmp_path / "authors_layout.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, st)
    assert torch.equal(_reference_output(load_network(st, 4)), expected)


def test_load_model_accepts_pt_and_safetensors(converted, authors_pt):
    a = load_model(4, weights=authors_pt(4))
    b = load_model(4, weights=converted[4])
    x = torch.rand(1, 3, 10, 12)
    assert torch.equal(a.forward(x), b.forward(x))
    assert (a.scale, a.variant) == (4, "fdiwn")


def test_scale_and_variant_are_read_from_the_checkpoint(converted):
    assert detect(read_checkpoint(converted[3])) == (3, "fdiwn")
    with pytest.raises(CheckpointError, match="checkpoint is for scale x3, but x4 was requested"):
        load_model(4, weights=converted[3])
    with pytest.raises(CheckpointError, match="variant 'fdiwn', but 'fdiwn-m'"):
        load_model(3, "fdiwn-m", weights=converted[3])


def test_converting_a_checkpoint_for_another_scale_fails_and_writes_nothing(authors_pt, tmp_path):
    out = tmp_path / "x.safetensors"
    with pytest.raises(CheckpointError, match="scale x2, but x4"):
        convert(authors_pt(2), out, scale=4)
    assert list(tmp_path.iterdir()) == []


def test_truncated_checkpoint_is_a_clear_error(authors_pt, tmp_path):
    src = tmp_path / "cut.pt"
    src.write_bytes(authors_pt(4).read_bytes()[:100_000])
    out = tmp_path / "out.safetensors"
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        convert(src, out)
    assert not out.exists()


def test_truncated_safetensors_is_a_clear_error(converted, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(converted[4].read_bytes()[:50_000])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(4, weights=cut)


def test_file_that_is_not_a_checkpoint(tmp_path):
    junk = tmp_path / "notes.pt"
    junk.write_text("hello, these are not weights\n" * 50)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        convert(junk, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


class Payload:
    """An arbitrary object: unpickling it must be refused, never executed."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_with_a_non_tensor_object_is_refused(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"head.weight": torch.zeros(1), "x": Payload()}, buf)
    evil.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="objects other than tensors"):
        convert(evil, tmp_path / "out.safetensors")
    assert "pwned" not in capsys.readouterr().out
    assert not (tmp_path / "out.safetensors").exists()


def test_state_dict_of_another_network_is_rejected(tmp_path):
    other = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(10)}, other)
    with pytest.raises(CheckpointError, match="not an FDIWN checkpoint"):
        load_model(4, weights=other)


def test_missing_tensor_is_named(authors_x4, tmp_path):
    state = dict(authors_x4)
    del state["Li2.MY3.fuse2.weight"]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys \['fswg.1.wdib3.fusion_gate.weight'\]"):
        load_network(path)


def test_wrong_shape_is_named(converted, tmp_path):
    state = load_file(converted[4])
    state["head.weight"] = torch.zeros(24, 3, 5, 5)
    path = tmp_path / "bad.safetensors"
    save_file(state, path)
    with pytest.raises(CheckpointError, match=r"'head.weight' has shape \(24, 3, 5, 5\), expected \(24, 3, 3, 3\)"):
        load_network(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_model(4, weights="/nonexistent/fdiwn.safetensors")


def test_cli_convert_reports_errors_without_traceback(authors_pt, tmp_path):
    out = tmp_path / "o.safetensors"
    r = subprocess.run(
        [sys.executable, "-m", "fdiwn_sr", "convert", str(authors_pt(2)), str(out), "--scale", "3"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "scale x2, but x3" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()
    r = subprocess.run(
        [sys.executable, "-m", "fdiwn_sr", "convert", str(authors_pt(2)), str(out), "--scale", "2"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert set(load_file(out)) == set(FDIWN(2).state_dict())

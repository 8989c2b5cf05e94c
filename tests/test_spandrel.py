"""FDIWN in the real spandrel: precise detection, every kind of FDIWN file, [0, 1] in and out, ComfyUI's calls."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from spandrel_env import import_spandrel

from fdiwn_sr import CheckpointError, load_model
from fdiwn_sr.manifest import load_manifest
from fdiwn_sr.network import FDIWN
from fdiwn_sr.training import resolve_config, train
from fdiwn_sr.weights import cache_path

try:
    spandrel = import_spandrel()
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("spandrel is not installed (pip install 'fdiwn-sr[spandrel]')", allow_module_level=True)

fdiwn_spandrel = importlib.import_module("fdiwn_sr.spandrel")
fdiwn_spandrel.install()

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-3  # the network issue's tolerances, 0..255 scale: trained weights on real pixels
TOL_UNTRAINED = 5e-3  # weights two steps from random: larger activations, more float rounding (as its noise inputs)


# Small crops: one thread is as fast, and immune to a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def set5_lr(reference_dir):
    """Set5's low-resolution images for a scale, 32 x 32 crops as one [0, 1] batch."""

    def get(scale: int) -> torch.Tensor:
        crops = [
            np.asarray(Image.open(p).convert("RGB"))[8:40, 8:40]
            for p in sorted((reference_dir / "set5" / f"x{scale}" / "LR").glob("*.png"))
        ]
        assert len(crops) == 5
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255

    return get


def max_diff_255(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) * 255


def check_descriptor(d, scale: int, variant: str) -> None:
    assert isinstance(d, spandrel.ImageModelDescriptor)
    assert d.architecture.id == "FDIWN" and d.purpose == "SR" and d.tags == [variant]
    assert (d.scale, d.input_channels, d.output_channels) == (scale, 3, 3)
    assert d.size_requirements.none and d.tiling == spandrel.ModelTiling.SUPPORTED
    assert d.supports_half and d.supports_bfloat16
    assert type(d.model) is FDIWN and (d.model.scale, d.model.variant) == (scale, variant)


def test_install_is_idempotent():
    assert fdiwn_spandrel.install() == []
    assert [a.architecture.id for a in spandrel.MAIN_REGISTRY].count("FDIWN") == 1
    registry = spandrel.ArchRegistry()
    assert len(fdiwn_spandrel.install(registry)) == 1 and fdiwn_spandrel.install(registry) == []


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_authors_pt_and_our_safetensors_load_and_equal_upscaler(scale, authors_pt, converted, set5_lr):
    x = set5_lr(scale)
    expected = load_model(scale, weights=authors_pt(scale), device="cpu").upscale(x, tile=0)
    for path in (authors_pt(scale), converted[scale]):
        d = spandrel.ModelLoader().load_from_file(path)
        check_descriptor(d, scale, "fdiwn")
        y = d(x)
        assert y.shape == (5, 3, 32 * scale, 32 * scale) and y.dtype == torch.float32
        assert max_diff_255(y, expected) <= TOL, path.name


@pytest.fixture(scope="module")
def trained_fdiwn_m(reference_dir, tmp_path_factory) -> Path:
    """An fdiwn-m x3 file exported by the trainer after two steps on Set5 crops."""
    root = tmp_path_factory.mktemp("train")
    (root / "hr").mkdir()
    for p in sorted((reference_dir / "set5" / "x3" / "HR").glob("*.png"))[:2]:
        Image.fromarray(np.asarray(Image.open(p).convert("RGB"))[:96, :96]).save(root / "hr" / p.name)
    config = resolve_config(
        train_hr=str(root / "hr"), val_hr=None, scale=3, variant="fdiwn-m", patch_size=16, batch_size=2, workers=0,
        steps=2, log_every=1, out_dir=str(root / "run"), progress=False,
    )  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as for the tests (a module fixture runs before their one_thread)
    try:
        return train(config).weights
    finally:
        torch.set_num_threads(before)


def test_trainer_exported_fdiwn_m_loads_and_equals_upscaler(trained_fdiwn_m, set5_lr):
    x = set5_lr(3)[:2]
    d = spandrel.ModelLoader().load_from_file(trained_fdiwn_m)
    check_descriptor(d, 3, "fdiwn-m")
    expected = load_model(3, "fdiwn-m", weights=trained_fdiwn_m, device="cpu").upscale(x, tile=0)
    assert max_diff_255(d(x), expected) <= TOL_UNTRAINED


def resaved(state: dict[str, torch.Tensor], *, prefix: str = "", parametrizations: bool = False) -> dict:
    out = {}
    for k, v in state.items():
        if parametrizations:
            k = k.replace(".weight_g", ".parametrizations.weight.original0")
            k = k.replace(".weight_v", ".parametrizations.weight.original1")
        out[prefix + k] = v
    return out


def test_resaved_styles_load_as_the_same_network(authors_pt, set5_lr, tmp_path):
    """DataParallel's ``module.`` and the new weight-norm parametrisation, in a .pth and a .safetensors."""
    original = torch.load(authors_pt(2), map_location="cpu", weights_only=True)
    x = set5_lr(2)[:1]
    expected = spandrel.ModelLoader().load_from_file(authors_pt(2))(x)
    torch.save(resaved(original, prefix="module.", parametrizations=True), tmp_path / "dp.pth")
    save_file(resaved(original, parametrizations=True), tmp_path / "new_wn.safetensors")
    for name in ("dp.pth", "new_wn.safetensors"):
        d = spandrel.ModelLoader().load_from_file(tmp_path / name)
        check_descriptor(d, 2, "fdiwn")
        assert torch.equal(d(x), expected), name


def other_architectures() -> dict[str, torch.nn.Module]:
    """spandrel's own networks with random weights (small configurations), keyed by architecture id."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.OmniSR import OmniSR
    from spandrel.architectures.RCAN import RCAN
    from spandrel.architectures.SPAN import SPAN
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    return {
        "SPAN": SPAN(num_in_ch=3, num_out_ch=3, feature_channels=24, upscale=2),
        "ESRGAN": ESRGAN(num_filters=16, num_blocks=2, scale=4),  # RealESRGAN's RRDBNet
        "SwinIR": SwinIR(
            embed_dim=24, depths=[2], num_heads=[2], window_size=8, upscale=2, upsampler="pixelshuffledirect"
        ),
        "OmniSR": OmniSR(num_feat=24, up_scale=3),
        "RCAN": RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=24, reduction=8),  # has sub_mean/add_mean too
        "Compact": Compact(num_feat=16, num_conv=2, upscale=4),
    }


def test_other_architectures_are_not_claimed_by_fdiwn():
    for arch_id, net in other_architectures().items():
        state = net.state_dict()
        assert not fdiwn_spandrel.ARCHITECTURE.detect(state), arch_id
        assert spandrel.ModelLoader().load_from_state_dict(state).architecture.id == arch_id


@pytest.mark.slow
def test_every_fdiwn_state_dict_is_claimed_by_fdiwn_alone(authors_pt, converted, trained_fdiwn_m):
    states = [torch.load(authors_pt(s), map_location="cpu", weights_only=True) for s in (2, 3, 4)]
    states += [load_file(converted[s]) for s in (2, 3, 4)] + [load_file(trained_fdiwn_m)]
    states.append(resaved(states[0], prefix="module.", parametrizations=True))
    states.append({k.replace(".original0", "_g").replace(".original1", "_v"): v for k, v in states[3].items()})
    for k, state in enumerate(states):
        claimed = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(state)]
        assert claimed == ["FDIWN"], k


@pytest.fixture(scope="module")
def ours_x2(converted) -> dict[str, torch.Tensor]:
    return load_file(converted[2])


def test_truncated_state_dict_is_a_clear_error(authors_pt, ours_x2):
    authors = torch.load(authors_pt(2), map_location="cpu", weights_only=True)  # in the network's order
    truncated = dict(itertools.islice(authors.items(), len(authors) // 2))
    with pytest.raises(CheckpointError, match=r"no upsampler weight"):
        spandrel.ModelLoader().load_from_state_dict(truncated)
    one_missing = {k: v for k, v in ours_x2.items() if k != "fswg.1.wdib2.wcrw1.shortcut.weight"}
    with pytest.raises(CheckpointError, match=r"1 missing keys \['fswg\.1\.wdib2\.wcrw1\.shortcut\.weight'\]"):
        spandrel.ModelLoader().load_from_state_dict(one_missing)


def test_shape_mangled_state_dict_is_a_clear_error(ours_x2):
    mangled = dict(ours_x2)
    mangled["fswg.2.wdib3.fusion_gate.weight"] = ours_x2["fswg.2.wdib3.fusion_gate.weight"][:, :40]
    with pytest.raises(CheckpointError, match=r"'fswg\.2\.wdib3\.fusion_gate\.weight' has shape \(24, 40, 1, 1\)"):
        spandrel.ModelLoader().load_from_state_dict(mangled)
    five = dict(ours_x2, **{k: torch.zeros(75, *ours_x2[k].shape[1:]) for k in ("trunk_up.weight", "skip_up.weight")})
    with pytest.raises(CheckpointError, match="upsampler has 75 output channels"):
        spandrel.ModelLoader().load_from_state_dict(five)
    head = dict(ours_x2, **{"head.weight": ours_x2["head.weight"][:, :1]})  # a 1-channel stem is no FDIWN
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.ModelLoader().load_from_state_dict(head)


def test_module_can_be_halved_and_traced(converted, set5_lr):
    d = spandrel.ModelLoader().load_from_file(converted[4])
    x = set5_lr(4)[:1, :, :16, :16]
    y = d(x)
    traced = torch.jit.trace(d.model, x * 255, check_trace=False)
    assert max_diff_255(traced(x * 255) / 255, y) <= TOL
    for dtype, min_psnr in ((torch.bfloat16, 45.0), (torch.float16, 60.0)):
        low = spandrel.ModelLoader().load_from_file(converted[4]).to(dtype)
        z = low(x.to(dtype))
        assert z.dtype == dtype and next(low.model.parameters()).dtype == dtype
        mse = float(((z.float() - y) ** 2).mean())
        assert 10 * np.log10(1 / mse) >= min_psnr, dtype


# --- ComfyUI ---------------------------------------------------------------------------------------------------


def import_custom_node_package():
    """Import integrations/comfyui as ComfyUI imports a folder under custom_nodes/."""
    folder = ROOT / "integrations" / "comfyui"
    spec = importlib.util.spec_from_file_location(
        "fdiwn_comfyui", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def comfy_load_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """comfy.utils.load_torch_file(path, safe_load=True): safetensors, else a weights-only torch.load."""
    if path.suffix in (".safetensors", ".sft"):
        return load_file(path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    return loaded.get("state_dict", loaded)


def comfy_load_upscale_model(path: Path):
    """ComfyUI's "Load Upscale Model" node."""
    sd = comfy_load_torch_file(path)
    if "module.layers.0.residual_group.blocks.0.norm1.weight" in sd:  # SwinIR's DataParallel files only
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    model = spandrel.ModelLoader().load_from_state_dict(sd).eval()
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise TypeError("Upscale model must be a single-image model.")
    return model


@torch.inference_mode()
def comfy_tiled_scale(samples, function, tile: int, overlap: int, scale: int) -> torch.Tensor:
    """comfy.utils.tiled_scale: overlapping tiles, feathered by linear ramps over the overlap, averaged."""
    b, _, h, w = samples.shape
    output = torch.empty(b, 3, h * scale, w * scale)
    for i in range(b):
        s = samples[i : i + 1]
        if h <= tile and w <= tile:
            output[i : i + 1] = function(s)
            continue
        acc = torch.zeros(1, 3, h * scale, w * scale)
        weight = torch.zeros_like(acc)
        starts = [range(0, n - overlap, tile - overlap) if n > tile else [0] for n in (h, w)]
        for y0, x0 in itertools.product(*starts):
            y0, x0 = max(0, min(h - overlap, y0)), max(0, min(w - overlap, x0))
            th, tw = min(tile, h - y0), min(tile, w - x0)
            out = function(s[:, :, y0 : y0 + th, x0 : x0 + tw])
            mask = torch.ones_like(out)
            feather = overlap * scale
            for dim in (2, 3):
                if feather < mask.shape[dim]:
                    for t in range(feather):
                        mask.narrow(dim, t, 1).mul_((t + 1) / feather)
                        mask.narrow(dim, mask.shape[dim] - 1 - t, 1).mul_((t + 1) / feather)
            rows, cols = slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale)
            acc[:, :, rows, cols] += out * mask
            weight[:, :, rows, cols] += mask
        output[i : i + 1] = acc / weight
    return output


def comfy_upscale_with_model(upscale_model, image: torch.Tensor, tile: int = 512, overlap: int = 32) -> torch.Tensor:
    """ComfyUI's "Upscale Image (using Model)" node on a BHWC [0, 1] IMAGE."""
    upscale_model.to("cpu")
    in_img = image.movedim(-1, -3)
    s = comfy_tiled_scale(in_img, lambda a: upscale_model(a), tile, overlap, upscale_model.scale)
    return torch.clamp(s.movedim(-3, -1), min=0, max=1.0)


@pytest.mark.slow
def test_comfyui_nodes_read_fdiwn_files_and_upscale_bhwc(authors_pt, converted, set5_lr, tmp_path, monkeypatch):
    package = import_custom_node_package()
    assert "FDIWN" in spandrel.MAIN_REGISTRY
    image = set5_lr(2)[:2].movedim(1, -1)  # ComfyUI's IMAGE: B x H x W x C in [0, 1]
    expected = load_model(2, weights=authors_pt(2), device="cpu").upscale(set5_lr(2)[:2], tile=0).movedim(1, -1)

    model = comfy_load_upscale_model(authors_pt(2))
    whole = comfy_upscale_with_model(model, image)  # 32 x 32 fits ComfyUI's 512 tile: one call per image
    assert whole.shape == (2, 64, 64, 3) and max_diff_255(whole, expected) <= TOL
    tiled = comfy_upscale_with_model(model, image, tile=24, overlap=8)  # what an OOM retry shrinks to
    assert tiled.shape == whole.shape and float(tiled.min()) >= 0 and float(tiled.max()) <= 1
    psnr = 10 * np.log10(1 / float(((tiled - whole) ** 2).mean()))
    assert psnr > 40, psnr  # tiles see other statistics than the whole image, but no seams or misplacement

    # The pretrained node, offline from a warm cache: the same network as the file.
    monkeypatch.setenv("FDIWN_SR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FDIWN_SR_OFFLINE", "1")
    target = cache_path(load_manifest().entry(2, "fdiwn"), tmp_path / "home")
    target.parent.mkdir(parents=True)
    target.write_bytes(converted[2].read_bytes())
    node = package.NODE_CLASS_MAPPINGS["FDIWNPretrainedLoader"]()
    choices = node.INPUT_TYPES()["required"]
    assert choices["scale"] == (["x4", "x3", "x2"],) and choices["variant"] == (["fdiwn"],)
    (pretrained,) = getattr(node, node.FUNCTION)(scale="x2", variant="fdiwn")
    check_descriptor(pretrained, 2, "fdiwn")
    assert max_diff_255(comfy_upscale_with_model(pretrained, image), expected) <= TOL


# --- packaging and the example --------------------------------------------------------------------------------


def test_missing_spandrel_names_the_extra():
    code = "import sys; sys.modules['spandrel'] = None; import fdiwn_sr; import fdiwn_sr.spandrel"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "pip install 'fdiwn-sr[spandrel]'" in r.stderr
    code = "import sys, fdiwn_sr; print('spandrel' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"  # the core never imports an integration


def test_example_runs(converted, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sample_x2.png"
    script = ROOT / "examples" / "spandrel_loader.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(converted[2]), "--output", str(out)])
    runpy.run_path(str(script), run_name="__main__")  # in this process: see spandrel_env
    sample = Image.open(ROOT / "examples" / "data" / "sample.png")
    assert Image.open(out).size == (sample.width * 2, sample.height * 2)
    assert "FDIWN x2 (fdiwn)" in capsys.readouterr().out

"""The public surface a model-zoo user expects: list_models / list_pretrained from the manifest, the
Literal variant, __all__ in every public module, the version module, upscale()'s overloads matching
what it returns, the [0, 1] contract of Upscaler.forward, and a missing extra named in its ImportError.

Runs on random weights (no reference data needed): these test the API, not the network's numbers."""

from __future__ import annotations

import ast
import collections.abc
import sys
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fdiwn_sr
from fdiwn_sr import upscaler as upscaler_module
from fdiwn_sr.checkpoints import save_safetensors
from fdiwn_sr.manifest import METRICS, load_manifest
from fdiwn_sr.network import FDIWN, SCALES, VARIANTS, VariantName, count_parameters

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fdiwn_sr"


@pytest.fixture(scope="module")
def up() -> fdiwn_sr.Upscaler:
    torch.manual_seed(0)
    return fdiwn_sr.Upscaler(FDIWN(2, "fdiwn"), "cpu")


# --- list_models -------------------------------------------------------------------------------


def test_list_models_covers_every_variant_and_scale_with_the_manifests_facts():
    models = fdiwn_sr.list_models()
    assert [(m.variant, m.scale) for m in models] == [(v, s) for v in VARIANTS for s in SCALES]
    released = {(e.variant, e.scale): e for e in load_manifest().models.values()}
    for m in models:
        entry = released.get((m.variant, m.scale))
        assert m.pretrained is (entry is not None)
        assert m.params == count_parameters(FDIWN(m.scale, m.variant))  # the network agrees with the manifest
        scores = [getattr(m, k) for k in METRICS]
        if entry is None:
            assert m.name == f"{m.variant}-x{m.scale}" and scores == [None] * len(METRICS)
        else:
            assert (m.name, m.params) == (entry.name, entry.params)
            assert scores == [entry.metrics[k] for k in METRICS]
    x4 = next(m for m in models if (m.variant, m.scale) == ("fdiwn", 4))
    assert x4.pretrained and 32.0 < x4.set5_psnr_y < 32.5 and x4.paper_set5_psnr_y == 32.23


def test_list_pretrained_is_the_models_with_released_weights():
    pretrained = fdiwn_sr.list_pretrained()
    assert pretrained == fdiwn_sr.list_models(pretrained=True) == [m for m in fdiwn_sr.list_models() if m.pretrained]
    assert {(m.variant, m.scale) for m in pretrained} == {(e.variant, e.scale) for e in load_manifest().models.values()}
    assert all(m.variant == "fdiwn" for m in pretrained)  # no FDIWN-M weights were ever released


def test_variant_is_a_literal_of_the_variants_table():
    assert typing.get_args(VariantName) == tuple(VARIANTS)
    assert fdiwn_sr.load_model.__annotations__["variant"] == "VariantName"
    assert fdiwn_sr.registry.ModelInfo.__annotations__["variant"] == "VariantName"


# --- __all__ and the version -------------------------------------------------------------------


def _public_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name == "__init__.py" or not p.name.startswith("_"))


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


@pytest.mark.parametrize("path", _public_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_public_module_declares_all_and_defines_it(path):
    tree = ast.parse(path.read_text())
    declared = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    assert declared, f"{path.relative_to(ROOT)} has no __all__"
    names = ast.literal_eval(declared[0])
    lazy = set()
    if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):  # PEP 562 lazy names
        lazy = {k for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in map(ast.literal_eval, n.keys)}
    assert not set(names) - _top_level_names(tree) - lazy, f"{path.relative_to(ROOT)}: __all__ names undefined names"
    assert len(names) == len(set(names))


def test_every_name_in_the_packages_all_resolves():
    for name in fdiwn_sr.__all__:
        assert getattr(fdiwn_sr, name) is not None
    import fdiwn_sr.training as training

    for name in training.__all__:  # the lazy ones too
        assert callable(getattr(training, name)), name


def test_the_version_lives_in_its_own_module_and_the_build_reads_it_there():
    from fdiwn_sr._version import __version__

    assert fdiwn_sr.__version__ == __version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["hatch"]["version"]["path"] == "fdiwn_sr/_version.py"
    assert "__version__ =" not in (PACKAGE / "__init__.py").read_text()


# --- overloads ---------------------------------------------------------------------------------


def _accepts(tp: object, value: object) -> bool:
    """What a type checker's overload resolution decides, for the few type forms the overloads use."""
    if tp is typing.Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in args)
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, origin) or isinstance(value, str):
            return False
        return all(_accepts(args[0], v) for v in value)
    return isinstance(value, origin or tp)


def _resolve(function, namespace: dict, value: object) -> object:
    """The declared return type of the first overload of ``function`` whose ``image`` accepts ``value``."""
    overloads = typing.get_overloads(function)
    assert len(overloads) >= 7
    for o in overloads:
        if _accepts(eval(o.__annotations__["image"], namespace), value):
            return eval(o.__annotations__["return"], namespace)
    raise AssertionError(f"no overload takes {type(value).__name__}")


def _samples(tmp_path) -> dict[str, object]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    pil, path = Image.fromarray(rgb), str(tmp_path / "a.png")
    return {
        "pil": pil,
        "str path": path,
        "Path": Path(path),
        "numpy": rgb,
        "tensor": torch.rand(3, 8, 10),
        "list of PIL": [pil, pil],
        "tuple of paths": (path, Path(path)),
        "list of str paths": [path],
        "list of numpy": [rgb, rgb],
        "list of tensors": [torch.rand(3, 8, 10)],
        "mixed list": [pil, rgb],
    }


def _is(value: object, tp: object) -> bool:
    if typing.get_origin(tp) is list:
        return isinstance(value, list) and all(_is(v, typing.get_args(tp)[0]) for v in value)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is(value, a) for a in typing.get_args(tp))
    return isinstance(value, tp)


def test_overloads_declare_what_upscale_really_returns(up, tmp_path):
    weights = tmp_path / "random_x2.safetensors"
    save_safetensors(up.model, weights)

    def top_level(image):
        return fdiwn_sr.upscale(image, 2, weights=weights, device="cpu")

    for name, value in _samples(tmp_path).items():
        for function, namespace, call in (
            (fdiwn_sr.Upscaler.upscale, vars(upscaler_module), up.upscale),
            (fdiwn_sr.upscale, vars(fdiwn_sr), top_level),
        ):
            declared = _resolve(function, namespace, value)
            result = call(value)
            assert _is(result, declared), f"{name}: declared {declared}, got {type(result)}"
            if name in ("pil", "str path", "Path"):
                assert declared is Image.Image  # upscale(PIL image) is typed as a PIL image
            if name == "list of PIL":
                assert declared == list[Image.Image]


# --- the [0, 1] contract -----------------------------------------------------------------------


def test_forward_takes_and_gives_0_to_1_around_the_networks_0_to_255(up):
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    y = up.forward(x)
    assert y.shape == (2, 3, 18, 14) and y.dtype == torch.float32
    with torch.inference_mode():
        network = up.model(x.float() * 255) / 255  # FDIWN itself computes in 0..255, like the authors' code
    torch.testing.assert_close(y, network, atol=2e-5, rtol=1e-4)


def test_upscale_of_a_tensor_is_forward_clamped_in_the_tensors_dtype(up):
    x = torch.rand(1, 3, 12, 10, dtype=torch.float64)
    out = up.upscale(x, tile=0)
    assert out.dtype == torch.float64 and float(out.min()) >= 0 and float(out.max()) <= 1
    torch.testing.assert_close(out.float(), up.forward(x).clamp(0, 1), atol=2e-5, rtol=0)  # float64 vs 32 input


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(1, 3, 8, 8) * 255, r"\[0, 1\]"),  # the old 0..255 convention is refused, not silently wrong
        (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), "floating-point"),
    ],
)
def test_tensors_outside_the_contract_are_refused_by_upscale(up, x, match):
    with pytest.raises((ValueError, TypeError), match=match):
        up.upscale(x)


@pytest.mark.parametrize(
    "x", [torch.rand(3, 8, 8), torch.rand(1, 4, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), np.zeros((8, 8, 3))]
)
def test_forward_refuses_what_is_not_a_batch_of_rgb_floats(up, x):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\) float tensor in \[0, 1\]"):
        up.forward(x)


# --- optional extras ---------------------------------------------------------------------------


def test_a_missing_onnxruntime_is_an_import_error_naming_the_extra(monkeypatch):
    from fdiwn_sr.backends import make_runner

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python does when the package is absent
    with pytest.raises(ImportError, match=r"pip install 'fdiwn-sr\[onnx\]'"):
        make_runner(FDIWN(2), torch.device("cpu"), backend="onnxruntime")
    with pytest.raises(ImportError, match=r"fdiwn-sr\[onnx\]"):
        fdiwn_sr.Upscaler(FDIWN(2), "cpu", backend="onnxruntime")

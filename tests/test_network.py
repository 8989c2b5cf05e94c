"""The network reproduces the authors' golden outputs, in both forms."""

from __future__ import annotations

import copy

import pytest
import torch
from random_network import randomised
from safetensors.torch import load_file

from fdiwn_sr.checkpoints import load_network
from fdiwn_sr.network import FDIWN, count_parameters

TOL = {"crop": 1e-3, "noise": 5e-3}


@pytest.fixture(scope="module")
def golden(reference_dir):
    return {s: load_file(reference_dir / "golden" / f"official_x{s}.safetensors") for s in (2, 3, 4)}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_converted_weights_reproduce_golden_in_both_forms(scale, converted, golden):
    model = load_network(converted[scale], scale).eval()
    g = golden[scale]
    with torch.no_grad():
        for form in ("training", "inference"):
            if form == "inference":
                model.fold()
            for name, tol in TOL.items():
                out = model(g[f"input_{name}"])
                assert out.shape == g[f"output_{name}"].shape
                diff = (out - g[f"output_{name}"]).abs().max().item()
                assert diff <= tol, f"x{scale} {form} form, input_{name}: max abs diff {diff}"


@pytest.mark.parametrize(("scale", "params"), [(2, 629_176), (3, 646_486), (4, 663_848)])
def test_parameter_counts_match_the_release(scale, params):
    assert count_parameters(FDIWN(scale)) == params


@pytest.mark.parametrize(("scale", "paper"), [(2, 433_000), (3, 446_000), (4, 454_000)])
def test_fdiwn_m_parameter_count_within_3_percent_of_paper(scale, paper):
    assert abs(count_parameters(FDIWN(scale, "fdiwn-m")) - paper) / paper < 0.03


@pytest.mark.parametrize(("scale", "variant"), [(2, "fdiwn"), (3, "fdiwn-m"), (4, "fdiwn")])
def test_inference_form_equals_training_form_with_random_weights(scale, variant):
    # float64 separates the algebra of folding from float32 rounding. A random
    # (untrained) network is badly conditioned: it amplifies float64 rounding to
    # about 1e-6 of its output range, while a folding mistake shows at the size of
    # a scalar's distance from 1 (> 0.1 here). 1e-5 sits well between the two.
    model = randomised(scale, variant, seed=scale)
    scalars = [p.item() for p in model.parameters() if p.numel() == 1]
    assert min(abs(s - 1.0) for s in scalars) > 0.1
    x = torch.rand(1, 3, 23, 29, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 255
    with torch.no_grad():
        expected = model(x)
        folded = copy.deepcopy(model).fold()
        got = folded(x)
    assert not any(p.numel() == 1 for p in folded.parameters())
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()


def test_fold_is_idempotent_and_freezes():
    model = FDIWN(4).fold()
    n = count_parameters(model)
    model.fold()
    assert count_parameters(model) == n
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("scale", [2, 4])
def test_fdiwn_m_forward_and_backward(scale):
    model = FDIWN(scale, "fdiwn-m")
    x = torch.rand(2, 3, 16, 12) * 255
    y = model(x)
    assert y.shape == (2, 3, 16 * scale, 12 * scale)
    y.abs().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) > 0 for g in grads) > 0.8 * len(grads)


def test_invalid_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="scale must be one of"):
        FDIWN(5)
    with pytest.raises(ValueError, match="variant must be one of"):
        FDIWN(4, "fdiwn-xl")

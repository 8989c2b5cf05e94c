"""The fused inference form equals the training form, with random weights (no authors' files needed).

The algebra of the fused form (folded scalars, gates, shuffles) is checked in
float64 on the plain kernels: a rewriting mistake shows at the size of a
scalar's distance from 1 (> 0.1 here), float64 rounding (amplified by the
untrained network) below 1e-7 of the output range. oneDNN's kernels run in
float32 only: they are held to fixed fractions of the output range, FSWG by
FSWG and on the whole network (why those two, see the note above their tests).
"""

from __future__ import annotations

import pytest
import torch
from random_network import randomised

from fdiwn_sr.network import FDIWN
from fdiwn_sr.network.inference import FusedFDIWN, FusedFSWG
from fdiwn_sr.network.kernels import ONEDNN, PLAIN, OneDNN


def single(model: FDIWN) -> FDIWN:
    """A float32 copy of a (float64) network, for the oneDNN kernels."""
    copy = FDIWN(model.scale, model.variant).eval()
    copy.load_state_dict(model.state_dict())
    return copy


@pytest.mark.parametrize("variant", ["fdiwn", "fdiwn-m"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fused_form_equals_training_form_with_random_weights(scale, variant):
    model = randomised(scale, variant, seed=10 * scale + len(variant))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 10, 13, generator=torch.Generator().manual_seed(scale), dtype=torch.float64) * 255
    with torch.inference_mode():
        expected = model(x)
        plain = FusedFDIWN(model)(x)
    assert plain.dtype == torch.float64
    r = expected.abs().max().item()
    assert (plain - expected).abs().max().item() <= 1e-6 * r
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in state.items()), "the network was changed"
    assert not model.folded


# oneDNN runs float32 only. The whole untrained network with scalars far from 1 amplifies float32
# rounding up to 10 % of its output range (so no fixed bound holds there); one group alone keeps it
# near 3e-7. The kernels are held to 1e-5 of the range group by group with random scalars, and on the
# whole network with the scalars at their initial values (rounding there up to 1e-4); a kernel mistake
# shows at the size of a scalar's distance from 1, or of a whole operation.
ONEDNN_ONLY = pytest.mark.skipif(not ONEDNN, reason="this torch has no oneDNN CPU kernels")


@ONEDNN_ONLY
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("variant", ["fdiwn", "fdiwn-m"])
def test_onednn_kernels_equal_each_fswg_with_random_scalars(variant, residual):
    model = randomised(3, variant, seed=7 + residual)
    folded, folded32 = model.folded_copy(), single(model).folded_copy()
    c = model.head.out_channels
    x = torch.randn(1, c, 10, 13, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    kernels = OneDNN(block_pixels=32, depthwise_gate_pixels=0)  # small blocks: chains cross block edges
    with torch.inference_mode():
        for g64, g32 in zip(folded.fswg, folded32.fswg, strict=True):
            expected = g64(x) + (x if residual else 0)
            fast = FusedFSWG(g32).using(kernels)(kernels.prepare(x.float()), residual=residual)
            r = expected.abs().max().item()
            assert (fast - expected).abs().max().item() <= 1e-5 * r


@ONEDNN_ONLY
@pytest.mark.parametrize("variant", ["fdiwn", "fdiwn-m"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_onednn_kernels_equal_the_whole_network(scale, variant):
    model = randomised(scale, variant, seed=scale, scalars=False)
    x = torch.rand(1, 3, 10, 13, generator=torch.Generator().manual_seed(scale), dtype=torch.float64) * 255
    with torch.inference_mode():
        expected = model(x)
        fast = FusedFDIWN(single(model), OneDNN(block_pixels=32, depthwise_gate_pixels=0))(x.float())
    assert (fast - expected).abs().max().item() <= 1e-3 * expected.abs().max().item()


def test_the_kernel_set_is_chosen_once_when_built():
    fused = FusedFDIWN(FDIWN(2, "fdiwn-m"), OneDNN() if ONEDNN else PLAIN)
    kinds = {type(m.kernels) for m in fused.modules() if hasattr(m, "kernels")}
    assert kinds == {OneDNN if ONEDNN else type(PLAIN)}
    assert {type(m.kernels) for m in fused.using(PLAIN).modules() if hasattr(m, "kernels")} == {type(PLAIN)}

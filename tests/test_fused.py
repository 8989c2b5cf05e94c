"""The fused inference form equals the training form, with random weights (no authors' files needed).

The algebra of the fused form (folded scalars, gates, shuffles) is checked in
float64 on the plain kernels: a rewriting mistake shows at the size of a
scalar's distance from 1 (> 0.1 here), float64 rounding (amplified by the
untrained network) below 1e-7 of the output range. oneDNN's kernels run in
float32 only: they are held to a few times what float32 rounding alone does
to the training form.
"""

from __future__ import annotations

import pytest
import torch

from fdiwn_sr.network import FDIWN
from fdiwn_sr.network.inference import FusedFDIWN
from fdiwn_sr.network.kernels import ONEDNN, PLAIN, OneDNN

SA_PARAMETERS = ("cweight", "cbias", "sweight", "sbias")


def randomise(model: FDIWN, seed: int) -> None:
    """Scalars far from 1, shuffle-attention gates away from their neutral start, weights perturbed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() == 1:
                r = float(torch.rand(1, generator=gen))
                p.fill_(0.3 + 0.5 * r if r < 0.5 else 1.2 + 0.5 * r)
            elif name.rsplit(".", 1)[-1] in SA_PARAMETERS:
                p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            else:
                p.mul_(1 + 0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("variant", ["fdiwn", "fdiwn-m"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fused_form_equals_training_form_with_random_weights(scale, variant):
    model = FDIWN(scale, variant).double().eval()
    randomise(model, seed=10 * scale + len(variant))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 10, 13, generator=torch.Generator().manual_seed(scale), dtype=torch.float64) * 255
    with torch.inference_mode():
        expected = model(x)
        plain = FusedFDIWN(model)(x)
    assert plain.dtype == torch.float64
    r = expected.abs().max().item()
    assert (plain - expected).abs().max().item() <= 1e-6 * r
    if ONEDNN:
        # Small blocks (a kernel parameter): the 1x1 chains cross block boundaries on this small map too.
        single = FDIWN(scale, variant).eval()
        single.load_state_dict(model.state_dict())
        onednn = FusedFDIWN(single, OneDNN(block_pixels=32, depthwise_gate_pixels=0))
        with torch.inference_mode():
            rounding = (single(x.float()) - expected).abs().max().item()
            fast = onednn(x.float())
        assert (fast - expected).abs().max().item() <= 4 * rounding + 1e-6 * r
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items()), "the network was changed"
    assert not model.folded


def test_the_kernel_set_is_chosen_once_when_built():
    fused = FusedFDIWN(FDIWN(2, "fdiwn-m"), OneDNN() if ONEDNN else PLAIN)
    kinds = {type(m.kernels) for m in fused.modules() if hasattr(m, "kernels")}
    assert kinds == {OneDNN if ONEDNN else type(PLAIN)}
    assert {type(m.kernels) for m in fused.using(PLAIN).modules() if hasattr(m, "kernels")} == {type(PLAIN)}

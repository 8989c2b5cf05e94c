"""Untrained networks with seeded random weights, for checks that need no authors' files."""

from __future__ import annotations

import torch

from fdiwn_sr.network import FDIWN

SA_PARAMETERS = ("cweight", "cbias", "sweight", "sbias")


def randomise(model: FDIWN, seed: int, *, scalars: bool = True) -> None:
    """Weights perturbed, shuffle-attention gates away from their neutral start, and (``scalars``)
    every learnable scalar set far from 1 (0.3-0.55 or 1.45-1.7), so that every fold is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() == 1:
                r = float(torch.rand(1, generator=gen))
                if scalars:
                    p.fill_(0.3 + 0.5 * r if r < 0.5 else 1.2 + 0.5 * r)
            elif name.rsplit(".", 1)[-1] in SA_PARAMETERS:
                p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            else:
                p.mul_(1 + 0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def randomised(scale: int, variant: str, seed: int, *, scalars: bool = True) -> FDIWN:
    """A float64 network built from ``seed`` (the global RNG is left as it was), then ``randomise``d."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = FDIWN(scale, variant).double().eval()
    randomise(model, seed, scalars=scalars)
    return model

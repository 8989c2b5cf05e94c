"""FDIWN as a spandrel architecture, so programs built on spandrel (ComfyUI, chaiNNer) load its files.

spandrel picks an architecture from a state dict alone. FDIWN is recognised by
names no other network uses (its first WDIB, the mean-shift convolutions) and
by the shapes every FDIWN shares there, in our layout or the authors' (with or
without ``module.``, weight norm in either parametrisation). Loading goes
through :mod:`fdiwn_sr.checkpoints`: scale and variant come from the tensors'
shapes, every key and shape is checked, and a file that is recognisably FDIWN
but damaged raises :class:`~fdiwn_sr.CheckpointError` naming the problem
instead of loading a wrong model.

The descriptor's model is the network itself (:class:`~fdiwn_sr.network.FDIWN`,
folded for inference), a plain ``nn.Module`` that can be moved, halved or
traced; its call takes and returns [0, 1] like every spandrel model, while the
network works in 0..255. Needs the optional extra ``fdiwn-sr[spandrel]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from . import checkpoints
from ._optional import require
from .network import FDIWN

spandrel = require("spandrel", "spandrel", "FDIWN's spandrel architecture (fdiwn_sr.spandrel)")

__all__ = ["ARCHITECTURE", "FDIWNArch", "descriptor", "install"]

ARCH_ID = "FDIWN"

# Our-layout keys of the stem and the first WDIB, with the shapes every FDIWN has there
# (trunk width 24, whatever the scale or variant). Together no other network carries them.
SIGNATURE: dict[str, tuple[int, ...]] = {
    "sub_mean.weight": (3, 3, 1, 1),
    "add_mean.weight": (3, 3, 1, 1),
    "head.weight": (24, 3, 3, 3),
    "fswg.0.wdib1.wirw1.sa.cweight": (1, 2, 1, 1),
    "fswg.0.wdib1.coef_a1.mean_branch.0.weight": (3, 24, 1, 1),
    "fswg.0.wdib1.distill_gate1.weight": (24, 12, 3, 3),
    "fswg.0.wdib1.fusion_gate.weight": (24, 48, 1, 1),
}
# Where those keys live in either layout (ours, the authors'): only these are renamed to detect.
_SIGNATURE_PREFIXES = ("sub_mean.", "add_mean.", "head.", "fswg.0.wdib1.", "Sub_mean.", "Add_mean.", "Li1.MY1.")


def _signature_view(state: Mapping[str, object]) -> dict[str, object]:
    """The stem's and first WDIB's entries under our names, whatever the layout or re-save style."""
    part = {k: v for k, v in state.items() if k.removeprefix("module.").startswith(_SIGNATURE_PREFIXES)}
    # The authors' renaming rules leave names already in our layout unchanged.
    return checkpoints.from_authors(part)  # type: ignore[arg-type]


def _detect(state: Mapping[str, object]) -> bool:
    view = _signature_view(state)
    return all(isinstance(t := view.get(k), torch.Tensor) and tuple(t.shape) == shape for k, shape in SIGNATURE.items())


def _call(model: FDIWN, image: torch.Tensor) -> torch.Tensor:
    """spandrel's [0, 1] contract around the network's 0..255 range."""
    return model(image * 255.0) / 255.0


class FDIWNArch(spandrel.Architecture[FDIWN]):
    """Detects FDIWN state dicts and loads them as an ``ImageModelDescriptor``."""

    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name="FDIWN", detect=_detect)

    def load(self, state_dict: Mapping[str, torch.Tensor]) -> spandrel.ImageModelDescriptor[FDIWN]:
        # build() checks every key and shape and reads scale and variant from the tensors.
        return descriptor(checkpoints.build(checkpoints.from_authors(state_dict)))


ARCHITECTURE = FDIWNArch()


def descriptor(model: FDIWN) -> spandrel.ImageModelDescriptor[FDIWN]:
    """Wrap a network as spandrel's descriptor; the network is folded in place for inference.

    No size requirements (any height and width; padding would change the
    network's global statistics) and tiling supported, as in
    :meth:`fdiwn_sr.Upscaler.upscale`.
    """
    model.fold()
    return spandrel.ImageModelDescriptor(
        model,
        model.state_dict(),
        architecture=ARCHITECTURE,
        purpose="SR",
        tags=[model.variant],
        supports_half=True,
        supports_bfloat16=True,
        scale=model.scale,
        input_channels=3,
        output_channels=3,
        size_requirements=spandrel.SizeRequirements(),
        tiling=spandrel.ModelTiling.SUPPORTED,
        call_fn=_call,
    )


def install(registry: spandrel.ArchRegistry | None = None) -> list[spandrel.ArchSupport]:
    """Add FDIWN to spandrel's ``MAIN_REGISTRY`` (or ``registry``); returns what was added now.

    Idempotent: a second call adds nothing, and an architecture already
    registered under the id ``"FDIWN"`` is kept.
    """
    target = spandrel.MAIN_REGISTRY if registry is None else registry
    return target.add(spandrel.ArchSupport.from_architecture(ARCHITECTURE), ignore_duplicates=True)

"""The node behind the pretrained loader; importing it installs FDIWN into spandrel's registry."""

from __future__ import annotations

import fdiwn_sr
from fdiwn_sr import spandrel as fdiwn_spandrel
from fdiwn_sr.manifest import load_manifest

fdiwn_spandrel.install()


class FDIWNPretrainedLoader:
    """Loads the pretrained FDIWN for a scale (cache, then the Hub) as an ``UPSCALE_MODEL``."""

    CATEGORY = "loaders"
    RETURN_TYPES = ("UPSCALE_MODEL",)
    FUNCTION = "load"
    DESCRIPTION = "FDIWN (AAAI 2022) lightweight super-resolution, pretrained on DIV2K; weights fetched once."

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        released = load_manifest().models.values()  # only what was released can be fetched
        return {
            "required": {
                "scale": ([f"x{s}" for s in sorted({e.scale for e in released}, reverse=True)],),
                "variant": (sorted({e.variant for e in released}),),
            }
        }

    def load(self, scale: str, variant: str) -> tuple:
        # The plain eager backend: it keeps the network itself, which ComfyUI moves to its device.
        upscaler = fdiwn_sr.load_model(int(scale.removeprefix("x")), variant, device="cpu", backend="torch")
        return (fdiwn_spandrel.descriptor(upscaler.model),)


NODE_CLASS_MAPPINGS = {"FDIWNPretrainedLoader": FDIWNPretrainedLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"FDIWNPretrainedLoader": "Load FDIWN Upscale Model (pretrained)"}

"""ComfyUI custom nodes for FDIWN (fdiwn-sr).

Importing this package adds FDIWN to spandrel's registry, so ComfyUI's own
"Load Upscale Model" node reads FDIWN files (our safetensors and the authors'
``.pt``) from ``models/upscale_models``. It adds one node, "Load FDIWN
Upscale Model (pretrained)", which fetches the pretrained weights by scale.
Both give an ``UPSCALE_MODEL`` for "Upscale Image (using Model)".
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

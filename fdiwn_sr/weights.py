"""Where the weight bytes come from: given file -> cache -> Hub -> upstream.

(Placeholder until the weights issue lands: only ``weights=PATH`` works.)
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WeightsError


def resolve_weights(
    scale: int,
    variant: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
) -> Path:
    """Return a local file (our safetensors or an authors' .pt) holding the weights."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        return path
    raise WeightsError(f"no pretrained weights available for {variant} x{scale} yet: pass weights=PATH")

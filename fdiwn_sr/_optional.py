"""Optional dependencies, imported only when a feature needs them, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` that says which ``fdiwn-sr[extra]`` to install.

    Integrations call this at the point of use, so ``import fdiwn_sr`` never
    pulls in an integration's dependencies.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = feature or f"this feature (module {module!r})"
        raise ImportError(f"{what} needs the optional '{extra}' extra: pip install 'fdiwn-sr[{extra}]' ({e})") from e

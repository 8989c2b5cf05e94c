"""One exception type per failure family; each is also a built-in so plain ``except`` works."""

__all__ = ["CheckpointError", "IntegrityError", "WeightsError"]


class CheckpointError(ValueError):
    """A weights file is unreadable, of the wrong kind, or for another model."""


class WeightsError(OSError):
    """Weights could not be obtained: not cached, offline, download failed."""


class IntegrityError(WeightsError):
    """Downloaded bytes do not match the sha256 the manifest promises."""

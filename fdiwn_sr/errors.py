"""One exception type per failure family; each is also a built-in so plain ``except`` works."""

__all__ = ["CheckpointError", "IntegrityError", "VideoError", "WeightsError"]


class CheckpointError(ValueError):
    """A weights file is unreadable, of the wrong kind, or for another model."""


class WeightsError(OSError):
    """Weights could not be obtained: not cached, offline, download failed, cache folder unusable.

    ``cause`` says what failed; ``fix`` what to do from Python, ``cli_fix`` the
    same in the command line's terms (the CLI prints ``cause`` and ``cli_fix``).
    """

    def __init__(self, cause: str, fix: str = "", cli_fix: str = "") -> None:
        super().__init__(f"{cause}. Fix: {fix}" if fix else cause)
        self.cause, self.fix, self.cli_fix = cause, fix, cli_fix


class IntegrityError(WeightsError):
    """Downloaded bytes do not match the sha256 the manifest promises."""


class VideoError(ValueError):
    """A video cannot be read (unreadable, no video stream) or written (codec or container unavailable)."""

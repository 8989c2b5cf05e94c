"""The package version, in a module of its own so that build tools read it without importing torch."""

__all__ = ["__version__"]

__version__ = "0.1.0"

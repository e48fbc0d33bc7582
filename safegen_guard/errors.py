"""Exception types raised by SAFEGEN, so callers can catch us specifically."""

from __future__ import annotations


class SafeGenError(Exception):
    """Base class of every error SAFEGEN raises on purpose."""


class InputValidationError(SafeGenError, ValueError):
    """An input batch or argument does not have the expected shape, dtype or range."""


class DataLoadError(SafeGenError, ValueError):
    """A dataset could not be loaded (unknown name, no readable file, empty result)."""


class CheckpointError(SafeGenError, ValueError):
    """A saved guard is missing, tampered with, or of an incompatible format version."""


class NotFittedError(SafeGenError, RuntimeError):
    """An object was used before it was fitted or calibrated."""

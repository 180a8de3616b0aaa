"""Typed errors of napari-chromagan.

Every message says what went wrong and what to do next; the napari widgets turn these into
notifications and the command line into a one-line message, never a traceback.
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "CheckpointError",
    "ChromaGANError",
    "DeviceError",
    "UnsupportedImageError",
    "WeightsNotFoundError",
]


class ChromaGANError(Exception):
    """Base class of the errors this package raises on purpose."""


class UnsupportedImageError(ChromaGANError, ValueError):
    """The array cannot be colourised as given (empty, wrong dtype, wrong colour axis...)."""


class CheckpointError(ChromaGANError, ValueError):
    """A weights file is not a usable napari-chromagan checkpoint."""


class DeviceError(ChromaGANError, ValueError):
    """The requested compute device does not exist on this machine."""


class WeightsNotFoundError(ChromaGANError, FileNotFoundError):
    """No weights were given and none were found where the package looks for them."""


class Cancelled(ChromaGANError):
    """The caller asked to stop (its ``cancel`` event was set) before the work was done."""

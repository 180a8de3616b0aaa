"""Typed errors and warnings of napari-chromagan.

Every message says what went wrong and what to do next; the napari widgets turn these into
notifications and the command line into a one-line message, never a traceback. Where the way
out differs between Python and the command line (``image[..., 0]`` against ``--channel 0``), the
error also carries the command-line wording in ``cli_message``; :func:`cli_text` picks it.
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "CheckpointError",
    "ChromaGANError",
    "DeviceError",
    "HintError",
    "MissingPixelsWarning",
    "NetworkSizeError",
    "OutputError",
    "UnsupportedImageError",
    "WeightsNotFoundError",
    "cli_text",
]


class ChromaGANError(Exception):
    """Base class of the errors this package raises on purpose.

    Parameters
    ----------
    *args
        The message (phrased for Python callers), as for any exception.
    cli_message : str, optional
        The same problem phrased for command-line users (flags instead of arguments), when
        the two differ.
    """

    def __init__(self, *args: object, cli_message: str | None = None) -> None:
        super().__init__(*args)
        self.cli_message = cli_message


class UnsupportedImageError(ChromaGANError, ValueError):
    """The array cannot be colourised as given (empty, wrong dtype, wrong colour axis...)."""


class CheckpointError(ChromaGANError, ValueError):
    """A weights file is not a usable napari-chromagan checkpoint (or its network gives NaN)."""


class DeviceError(ChromaGANError, ValueError):
    """The requested compute device does not exist on this machine."""


class WeightsNotFoundError(ChromaGANError, FileNotFoundError):
    """No weights were given and none were found where the package looks for them."""


class OutputError(ChromaGANError, OSError):
    """An output file or folder cannot be written there (a file in the way, read-only...)."""


class HintError(ChromaGANError, ValueError):
    """Colour hints that cannot be applied as given (parameters out of range, hints that do not
    fit the result's shape, colours that are not colours)."""


class NetworkSizeError(ChromaGANError, ValueError):
    """A network size the weights cannot run at (not a multiple of 32, or weights whose dense
    layers fit one size only)."""


class Cancelled(ChromaGANError):
    """The caller asked to stop (its ``cancel`` event was set) before the work was done."""


class MissingPixelsWarning(UserWarning):
    """Every pixel of an image (or of some planes of a stack) was NaN or inf: it came out gray."""


def cli_text(exc: BaseException) -> str:
    """The message of ``exc`` for a command-line user: its ``cli_message`` when it has one."""
    return getattr(exc, "cli_message", None) or str(exc) or type(exc).__name__

"""What every subcommand shares: exit codes, usage errors, stderr lines, argparse types (the
whole-number ones live in :mod:`napari_chromagan.argtypes`, which ``python -m training`` uses too)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

# re-exported for the subcommands
from napari_chromagan.argtypes import non_negative_int as non_negative_int
from napari_chromagan.argtypes import positive_int as positive_int

PROG = "napari-chromagan"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_MAX_LISTED = 5


class _UsageError(Exception):
    """A problem with the arguments found after parsing; reported like argparse's errors."""


def _error(message: str) -> None:
    _write(f"{PROG}: error: {message}")


def _write(message: str) -> None:
    """One line on stderr, without breaking a progress bar that is being drawn there."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(message, file=sys.stderr, flush=True)
    else:
        tqdm.write(message, file=sys.stderr)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _list_paths(paths: Sequence[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_MAX_LISTED])
    more = len(paths) - _MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value

"""argparse types shared by the two command lines, ``napari-chromagan`` and ``python -m training``.

Each turns the text of one option into a value or raises ``argparse.ArgumentTypeError`` with a
message argparse prints after the option's name. Standard library only: the command lines'
``--help`` stays instant.
"""

from __future__ import annotations

import argparse

__all__ = ["non_negative_int", "positive_int", "size_multiple_of_32"]


def _whole_number(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return _whole_number(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    return _whole_number(text, 0, "0 or more")


def size_multiple_of_32(text: str) -> int:
    """A network input size: a whole multiple of 32, at least 32."""
    value = _whole_number(text, 32, "at least 32")
    if value % 32:
        raise argparse.ArgumentTypeError(
            f"must be a multiple of 32 (the trunk halves the plane five times), got {value}: "
            f"try {max(32, value // 32 * 32)} or {value // 32 * 32 + 32}"
        )
    return value

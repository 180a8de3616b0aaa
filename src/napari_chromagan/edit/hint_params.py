"""Colour-hint parameters: how far hints move, spread and fade (:class:`HintParams`).

The allowed ranges live here too; the Colour hints widget takes its slider limits from them.
No torch, Qt or napari.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from napari_chromagan.errors import HintError

__all__ = [
    "EDGE_RANGE",
    "FEATHER_RANGE",
    "REACH_RANGE",
    "STRENGTH_RANGE",
    "WORKING_PIXELS_RANGE",
    "HintParams",
]

# The allowed ranges, inclusive; the widget takes its slider limits from here.
STRENGTH_RANGE = (0.0, 1.0)
REACH_RANGE = (0.001, 10.0)
EDGE_RANGE = (0.1, 100.0)
FEATHER_RANGE = (0.0, 1000.0)
WORKING_PIXELS_RANGE = (1 << 10, 1 << 24)


@dataclass(frozen=True)
class HintParams:
    """How hints act.

    Attributes
    ----------
    strength : float
        In [0, 1]: how far a hint moves its pixels from the network's chroma towards its own
        (1 = exactly the hint's a*b*, 0.5 = half way, 0 = no effect).
    reach : float
        In [0.001, 10]: how far a hint spreads, as a fraction of the image's longer side (the
        decay length of its influence where the lightness is uniform). Points and strokes only.
    edge : float
        In [0.1, 100], L* units: the lightness step between neighbouring pixels at which spreading
        is weakened to exp(-1/2); a step of 3 x ``edge`` lets through about 1 %. Smaller = stops
        at fainter edges.
    feather : float
        In [0, 1000], full-resolution pixels: Labels mode only, how far a label's colour fades out
        beyond its border.
    working_pixels : int
        In [1024, 16777216]: the number of pixels the system is solved on (images up to this
        size are solved at full resolution).
    """

    strength: float = 1.0
    reach: float = 0.25
    edge: float = 3.0
    feather: float = 4.0
    working_pixels: int = 1 << 16

    def __post_init__(self) -> None:
        ranges = {
            "strength": STRENGTH_RANGE,
            "reach": REACH_RANGE,
            "edge": EDGE_RANGE,
            "feather": FEATHER_RANGE,
            "working_pixels": WORKING_PIXELS_RANGE,
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise HintError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
            if not lo <= float(value) <= hi:  # also rejects NaN
                raise HintError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")
            object.__setattr__(self, name, int(value) if name == "working_pixels" else float(value))

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins, for layer metadata and settings files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> HintParams:
        """Parameters from :meth:`to_dict` output (unknown keys ignored; ``{}`` = the defaults)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(values or {}).items() if k in names})

"""Intensity normalisation: from any scientific array to lightness in [0, 1] (= L*/100).

Photographs are 8-bit and mean what they say; scientific images (16-bit cameras, floats from a
reconstruction, signed integers) have arbitrary ranges. Three modes:

* ``"dtype"``: the dtype's full range (uint8 0-255, uint16 0-65535...; floats are taken as [0, 1]).
* ``"percentile"``: the (0.5, 99.5) % percentiles of the finite values of the whole image or
  stack, so that every plane of a stack is scaled alike (no flicker). Exact for 8- and 16-bit
  integers (a histogram); for wider types, exact up to 2^24 values and from an evenly strided
  sample of at least 2^24 values beyond that.
* ``"manual"``: a given ``(low, high)``.

``"auto"`` is ``"dtype"`` for uint8 images and for integer colour images, and ``"percentile"``
otherwise (a float colour image already within [0, 1] keeps that range).

The chosen mode and the values actually used are recorded in a :class:`Normalization`, which
:class:`~napari_chromagan.ColorizeResult` keeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["Normalization", "iter_blocks", "resolve_normalization"]

Mode = Literal["auto", "dtype", "percentile", "manual"]
DEFAULT_PERCENTILES = (0.5, 99.5)
_EXACT_LIMIT = 1 << 24
_BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Normalization:
    """How intensities were mapped to [0, 1]: ``(value - low) / (high - low)``, clipped."""

    mode: Literal["dtype", "percentile", "manual"]
    low: float
    high: float
    percentiles: tuple[float, float] | None = None

    def apply(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Map ``block`` to float32 in [0, 1]; NaN and +-inf become NaN (missing)."""
        if out is None:
            out = np.empty(block.shape, np.float32)
        # int32/int64/float64 lose precision when cast to float32 before the subtraction.
        wide = block.dtype.itemsize > 4 or block.dtype == np.int32 or block.dtype == np.uint32
        work = block.astype(np.float64 if wide else np.float32, copy=False)
        scale = 1.0 / (self.high - self.low)
        np.multiply(np.subtract(work, self.low, dtype=work.dtype), scale, out=out, casting="unsafe")
        np.clip(out, 0.0, 1.0, out=out)
        if block.dtype.kind == "f":
            out[~np.isfinite(block)] = np.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "low": self.low,
            "high": self.high,
            "percentiles": list(self.percentiles) if self.percentiles else None,
        }


def iter_blocks(
    image: Any, leading_ndim: int, max_elements: int = _BLOCK_ELEMENTS
) -> Iterator[np.ndarray]:
    """Yield numpy blocks covering ``image`` plane by plane, big planes in row strips.

    ``image`` is a numpy or dask array (or anything ``np.asarray`` reads by slices); only one
    block is in memory at a time.
    """
    leading = image.shape[:leading_ndim]
    plane_shape = image.shape[leading_ndim:]
    row_elements = max(1, math.prod(plane_shape[1:]))
    rows = max(1, max_elements // row_elements)
    for index in np.ndindex(*leading):
        for r0 in range(0, plane_shape[0], rows):
            yield np.asarray(image[(*index, slice(r0, r0 + rows))])


def _dtype_range(dtype: np.dtype) -> tuple[float, float]:
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def _percentiles(
    image: Any, leading_ndim: int, q: tuple[float, float]
) -> tuple[float, float] | None:
    dtype = np.dtype(image.dtype)
    if dtype.kind in "ui" and dtype.itemsize <= 2:
        offset = int(np.iinfo(dtype).min)
        hist = np.zeros(1 << (8 * dtype.itemsize), np.int64)
        for block in iter_blocks(image, leading_ndim):
            hist += np.bincount((block.ravel().astype(np.int64) - offset), minlength=hist.size)
        total = int(hist.sum())
        cumulative = np.cumsum(hist)

        def value_at(rank: int) -> float:  # the rank-th smallest value (0-based)
            return float(np.searchsorted(cumulative, rank, side="right") + offset)

        out = []
        for p in q:  # numpy's default "linear" percentile, computed from the histogram
            pos = p / 100.0 * (total - 1)
            lo, frac = math.floor(pos), pos - math.floor(pos)
            v0 = value_at(lo)
            v1 = value_at(min(lo + 1, total - 1))
            out.append(v0 + (v1 - v0) * frac)
        return out[0], out[1]
    size = math.prod(image.shape)
    step = max(1, size // _EXACT_LIMIT)
    parts = []
    for block in iter_blocks(image, leading_ndim):
        flat = block.ravel()[::step]
        parts.append(flat[np.isfinite(flat)] if dtype.kind == "f" else flat)
    values = np.concatenate(parts) if parts else np.empty(0)
    if values.size == 0:
        return None
    low, high = np.percentile(values.astype(np.float64, copy=False), q)
    return float(low), float(high)


def resolve_normalization(
    image: Any,
    mode: Mode = "auto",
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    value_range: tuple[float, float] | None = None,
    rgb: bool = False,
    leading_ndim: int | None = None,
) -> Normalization:
    """Choose the intensity mapping of ``image`` (numpy or dask, any shape) for ``mode``.

    ``value_range`` is required for (and implies) ``"manual"``. ``leading_ndim`` is the number of
    stack axes before each plane (default: all but the last two, or three when ``rgb``).
    """
    dtype = np.dtype(image.dtype)
    if leading_ndim is None:
        leading_ndim = image.ndim - (3 if rgb else 2)
    if value_range is not None and mode == "auto":
        mode = "manual"
    if mode == "manual":
        if value_range is None:
            raise ValueError("manual normalisation needs value_range=(low, high)")
        low, high = (float(v) for v in value_range)
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise ValueError(f"value_range must be finite with high > low, got {value_range!r}")
        return Normalization("manual", low, high)
    if mode == "auto":
        if dtype == np.uint8 or (rgb and dtype.kind in "ui"):
            mode = "dtype"
        elif rgb:
            # one block at a time, stopping at the first value outside [0, 1]
            in_unit = all(not ((b < 0) | (b > 1)).any() for b in iter_blocks(image, leading_ndim))
            mode = "dtype" if in_unit else "percentile"
        else:
            mode = "percentile"
    if mode == "dtype":
        low, high = _dtype_range(dtype)
        return Normalization("dtype", low, high)
    if mode != "percentile":
        raise ValueError(
            f"normalization must be 'auto', 'dtype', 'percentile' or 'manual', got {mode!r}"
        )
    q0, q1 = (float(p) for p in percentiles)
    if not 0 <= q0 < q1 <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
    found = _percentiles(image, leading_ndim, (q0, q1))
    if found is None:  # nothing finite: everything is missing and comes out gray
        return Normalization("percentile", 0.0, 1.0, (q0, q1))
    low, high = found
    if high <= low:  # a constant image: centre it, so it comes out mid-gray rather than black
        low, high = low - 0.5, low + 0.5
    return Normalization("percentile", low, high, (q0, q1))

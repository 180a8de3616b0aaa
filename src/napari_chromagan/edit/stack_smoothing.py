"""Gaussian smoothing of a*, b* along a stack axis (time points, z slices), against colour
flicker between planes (no Qt, no torch).

:func:`smooth_ab` smooths a whole stack; :func:`smooth_plane_ab` computes one plane of the same
result from its neighbours only, for live previews. The chroma blend
(:mod:`napari_chromagan.edit.blend`, which re-exports both) applies it before the per-pixel steps.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["smooth_ab", "smooth_plane_ab"]

_STRIP_PIXELS = 1 << 21  # pixels per block of rows in smooth_ab's float16 -> float32 steps


def _check_axis(ab: np.ndarray, axis: int) -> int:
    stack_ndim = ab.ndim - 3
    if stack_ndim < 1:
        raise ValueError(f"smoothing needs a stack (..., H, W, 2); ab has shape {ab.shape}")
    if not 0 <= axis < stack_ndim:
        raise ValueError(
            f"smooth_axis {axis} does not exist: ab has {stack_ndim} stack axis/axes (0..{stack_ndim - 1})"
        )
    return axis


def smooth_ab(ab: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """Gaussian-smooth a*, b* along a stack axis, against colour flicker between planes.

    Parameters
    ----------
    ab : ndarray
        float (*stack, H, W, 2).
    sigma : float
        Standard deviation in planes; 0 returns ``ab`` unchanged (not copied).
    axis : int
        The stack axis (0 = the first leading axis). Edges repeat the nearest plane
        (``scipy.ndimage.gaussian_filter1d`` with mode "nearest", truncated at 4 sigma).

    Returns
    -------
    ndarray
        float32, the shape of ``ab``; a new array unless ``sigma`` is 0 or the axis has one plane.
    """
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    ab = np.asarray(ab)
    if sigma == 0:
        return ab
    axis = _check_axis(ab, axis)
    if ab.shape[axis] == 1:
        return ab
    from scipy.ndimage import gaussian_filter1d

    if ab.dtype != np.float16:
        return gaussian_filter1d(ab, sigma, axis=axis, mode="nearest", output=np.float32)
    # scipy filters no float16 (a stored result's a*b*): widen one block of rows at a time.
    # The filter runs along a stack axis, so each row block is independent: same values.
    out = np.empty(ab.shape, np.float32)
    rows = max(1, _STRIP_PIXELS // max(1, ab[..., 0, :, 0].size))
    for r0 in range(0, ab.shape[-3], rows):
        at = (Ellipsis, slice(r0, r0 + rows), slice(None), slice(None))
        gaussian_filter1d(
            ab[at].astype(np.float32), sigma, axis=axis, mode="nearest", output=out[at]
        )
    return out


def _gaussian_weights(sigma: float) -> np.ndarray:
    """scipy.ndimage's gaussian_filter1d kernel (truncate=4): float64 (2 * radius + 1,)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 / (sigma * sigma) * x * x)
    return w / w.sum()


def smooth_plane_ab(
    ab: np.ndarray, index: tuple[int, ...], sigma: float, axis: int = 0
) -> np.ndarray:
    """The plane ``index`` of :func:`smooth_ab`, computed from its neighbours only.

    A weighted sum of the planes within 4 sigma of ``index`` along ``axis`` (cheap: no pass over
    the whole stack), so a live preview can show smoothing before it is applied.

    Returns
    -------
    ndarray
        float32 (H, W, 2); a view of ``ab[index]`` when there is nothing to smooth.
    """
    ab = np.asarray(ab)
    index = tuple(int(i) for i in index)
    if len(index) != ab.ndim - 3:
        raise ValueError(f"index {index} must have one entry per stack axis of ab {ab.shape}")
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma == 0 or ab.ndim == 3 or ab.shape[_check_axis(ab, axis)] == 1:
        return ab[index]
    weights = _gaussian_weights(sigma)
    radius = len(weights) // 2
    n = ab.shape[axis]
    # "nearest" edges: clamped neighbours; weights of repeated planes add up
    sources = np.clip(np.arange(index[axis] - radius, index[axis] + radius + 1), 0, n - 1)
    per_plane = np.zeros(n)
    np.add.at(per_plane, sources, weights)
    out = np.zeros(ab.shape[-3:], np.float32)
    at = list(index)
    for plane in np.flatnonzero(per_plane):
        at[axis] = int(plane)
        out += np.float32(per_plane[plane]) * ab[tuple(at)]
    return out

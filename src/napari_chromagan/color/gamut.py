"""The gamut policy: how a Lab colour outside sRGB is brought inside (no Qt, no napari).

The policy, one for the whole package (the engine, the Chroma blend, colour hints, evaluation):

* a colour is **in gamut** when its linear RGB lies in [0, 1] up to :data:`GAMUT_TOL`;
* an out-of-gamut colour keeps its **L\\* and hue**: its chroma (a\\*, b\\*) is scaled down onto
  the gamut boundary (clipping R, G and B instead would move L\\* by several units);
* where even the gray (L\\*, 0, 0) is outside (L\\* beyond [0, 100]) the chroma becomes 0, and
  the encoding to 8 bits clips the gray to black or white.

Two implementations of the one policy:

* :func:`fit_chroma_to_gamut`, the **exact** one and the reference: a bisection per
  out-of-gamut pixel (to ``2**-10`` of the chroma by default), computed in the planar kernels of
  :mod:`napari_chromagan.color.fastlab` (the formulas of :mod:`napari_chromagan.color.lab`,
  fused). The engine renders with it (:func:`fit_chroma_and_linear` also gives the linear RGB).
* the **table** one, for live previews (:class:`napari_chromagan.color.render.PlaneRenderer`): the
  outermost in-gamut chroma per (L\\*, hue) is computed once per process (:func:`gamut_table`,
  by the same bisection and in-gamut test, to 0.001 chroma units) and looked up with bilinear
  interpolation (:func:`table_chroma_scale`); pixels that the interpolation leaves further out
  than :data:`FIT_SLACK` (rare) fall back on the exact fit. Its measured difference from the
  exact fit is in :mod:`napari_chromagan.color.render`'s docstring and asserted by its tests.

The one place where the two may legitimately disagree is a sliver at the yellow cusp (L\\* > 92,
hues 98-107 degrees), where a ray of constant hue leaves the gamut and comes back in: the table
keeps the outer, more saturated boundary, the bisection may stop at the inner one.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import torch
from torch import Tensor

from napari_chromagan.color.fastlab import f_inv, in_gamut, lab_linear, lightness_terms

__all__ = [
    "FIT_SLACK",
    "GAMUT_TOL",
    "fit_chroma_and_linear",
    "fit_chroma_to_gamut",
    "gamut_table",
    "prepare_gamut_table",
    "table_chroma_scale",
]

GAMUT_TOL = 1e-6  # linear-RGB slack before a colour counts as out of gamut
FIT_SLACK = 1e-3  # overshoot of the table fit left to clipping (L* moves by less than 0.1)

_LUT_L, _LUT_HUE = 512, 2048  # gamut table resolution: L* steps over [0, 100], hue steps over 360°
_LUT_C_MAX = 140.0  # above the largest sRGB chroma (about 134, at blue)
_LUT_STEPS = 17  # bisection steps: 140 / 2**17 = 0.001 chroma units


# ----------------------------------------------------------------------------------- exact


def fit_chroma_to_gamut(L: Tensor, ab: Tensor, dim: int = -3, iterations: int = 10) -> Tensor:
    """Shrink the chroma of out-of-gamut colours until they fit sRGB, keeping L* and hue.

    Scales (a*, b*) by the largest ``t`` in [0, 1] found by bisection for which the colour is
    inside the sRGB gamut (linear RGB within [0, 1] up to :data:`GAMUT_TOL`). In-gamut pixels
    are returned bit-for-bit. If even the grey ``(L*, 0, 0)`` is outside (L* beyond about
    [0, 100]), chroma becomes 0.

    Parameters
    ----------
    L : Tensor
        Floating-point L* in [0, 100], shape of ``ab`` without axis ``dim``.
    ab : Tensor
        Floating-point a*, b*, channels (2) along ``dim``.
    dim : int, optional
        Channel axis of ``ab`` (default -3).
    iterations : int, optional
        Bisection steps (default 10); the scale is within ``2**-iterations`` of the boundary.

    Returns
    -------
    Tensor
        Fitted a*, b*, same shape and dtype as ``ab``.
    """
    return _fit(L, ab, dim, iterations, keep_linear=False)[0]


def fit_chroma_and_linear(
    L: Tensor, ab: Tensor, dim: int = -3, iterations: int = 10
) -> tuple[Tensor, Tensor]:
    """:func:`fit_chroma_to_gamut` and the linear RGB of the fitted colours, from one conversion.

    The in-gamut test converts every pixel to linear RGB; the renderer needs the same values to
    encode sRGB. This keeps them (recomputing only the fitted pixels') instead of converting
    every pixel twice.

    Returns
    -------
    (Tensor, Tensor)
        The fitted a*, b* (as :func:`fit_chroma_to_gamut`: ``ab``'s shape and dtype), and linear
        RGB planar, (3, P) for the P pixels of ``L`` in its order, in the compute dtype (at least
        float32): within [0, 1] up to :data:`GAMUT_TOL`, or beyond where L* is outside [0, 100].
    """
    fitted, linear = _fit(L, ab, dim, iterations, keep_linear=True)
    assert linear is not None
    return fitted, linear


def _fit(
    L: Tensor, ab: Tensor, dim: int, iterations: int, keep_linear: bool
) -> tuple[Tensor, Tensor | None]:
    if not ab.is_floating_point():
        raise TypeError(f"ab must be a floating-point tensor, got {ab.dtype}")
    dim = dim % ab.ndim if ab.ndim else dim
    if ab.ndim == 0 or ab.shape[dim] != 2:
        raise ValueError(f"ab needs 2 channels along dim {dim}, got {tuple(ab.shape)}")
    x = ab.to(torch.promote_types(ab.dtype, torch.float32))
    if L.shape != x.shape[:dim] + x.shape[dim + 1 :]:
        raise ValueError(f"L has shape {tuple(L.shape)}, expected ab's without dim {dim}")
    dtype = torch.promote_types(x.dtype, L.dtype)
    # Planar pixels (one tensor of P values per quantity) in fastlab's fused kernels, the gamut
    # table's: what depends on L* alone is computed once, and the bisection runs on the
    # out-of-gamut pixels alone (usually a small fraction of a real image).
    moved = x.to(dtype).movedim(dim, -1)
    a, b = (c.reshape(-1) for c in moved.unbind(-1))
    fy = (L.to(dtype).reshape(-1) + 16.0) / 116.0
    y_terms = lightness_terms(f_inv(fy))
    linear = lab_linear(fy, y_terms, a, b)
    out = torch.nonzero(~in_gamut(linear, GAMUT_TOL)).squeeze(1)
    if out.numel() == 0:
        return ab, linear if keep_linear else None
    fy_out = fy[out]
    y_out = [t[out] for t in y_terms]
    a_out, b_out = a[out], b[out]
    lo = torch.zeros_like(fy_out)
    hi = torch.ones_like(fy_out)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        ok = in_gamut(_chroma_linear(fy_out, y_out, a_out, b_out, mid), GAMUT_TOL)
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    a_fit, b_fit = a_out * lo, b_out * lo
    fitted = torch.stack([a, b], dim=1)
    fitted[out] = torch.stack([a_fit, b_fit], dim=1)
    fitted_ab = fitted.reshape(moved.shape).movedim(-1, dim).to(ab.dtype).reshape(ab.shape)
    if not keep_linear:
        return fitted_ab, None
    linear.index_copy_(1, out, lab_linear(fy_out, y_out, a_fit, b_fit))
    return fitted_ab, linear


# ----------------------------------------------------------------------------------- table

_table_lock = threading.Lock()


def prepare_gamut_table(device: str | torch.device = "cpu") -> None:
    """Build the gamut table for ``device`` now (about half a second, once per process).

    Rendering builds it on first use anyway; a widget calls this in a background thread when it
    opens, so that the first slider move is as fast as the next ones.
    """
    gamut_table(torch.device(device))


def gamut_table(device: str | torch.device = "cpu") -> Tensor:
    """The largest in-gamut chroma per (L*, hue): float32 (512, 2049) on ``device`` (cached).

    Row i is L* = 100 i / 511; column j is hue 2 pi j / 2048 (the last column repeats the first,
    so interpolation needs no wrap-around). Found by bisection (to 0.001 chroma units) with the
    same in-gamut test as :func:`fit_chroma_to_gamut`; about 0.3 s of CPU, once per process and
    device. Do not modify it.
    """
    with _table_lock:  # a second caller waits for the first build instead of repeating it
        return _max_chroma_table(torch.device(device))


@lru_cache(maxsize=4)
def _max_chroma_table(device: torch.device) -> Tensor:
    return _build_table(_LUT_L, _LUT_HUE, torch.float32, _LUT_STEPS).to(device)


def _build_table(n_l: int, n_hue: int, dtype: torch.dtype, steps: int) -> Tensor:
    """The outermost in-gamut chroma on a (L*, hue) grid, to ``_LUT_C_MAX / 2**steps``."""
    L = torch.linspace(0.0, 100.0, n_l, dtype=dtype)
    hue = torch.arange(n_hue, dtype=torch.float64) * (2 * math.pi / n_hue)
    grid = (
        ((L + 16.0) / 116.0)[:, None].expand(n_l, n_hue).reshape(-1),
        torch.cos(hue).to(dtype)[None].expand(n_l, n_hue).reshape(-1),
        torch.sin(hue).to(dtype)[None].expand(n_l, n_hue).reshape(-1),
    )
    lo = _bisect_boundary(
        *grid, torch.zeros_like(grid[0]), torch.full_like(grid[0], _LUT_C_MAX), steps
    )
    # Near the yellow cusp some rays leave the gamut and come back in (R goes above 1 and back:
    # measured at L* > 92, hues 98-107 degrees, and nowhere else), so bisection may have found
    # the inner exit. Probe above it (for L* >= 80), and for rays that are in gamut again further
    # out, find the outer boundary by a scan.
    bright = torch.nonzero(grid[0] >= (80.0 + 16.0) / 116.0).squeeze(1)
    fy, cos, sin, lo_b = grid[0][bright], grid[1][bright], grid[2][bright], lo[bright]
    probe_y = lightness_terms(f_inv(fy))
    outer = torch.zeros_like(fy, dtype=torch.bool)
    for j in range(1, 25):
        outer |= in_gamut(
            _chroma_linear(fy, probe_y, cos, sin, lo_b + (_LUT_C_MAX - lo_b) * (j / 25)),
            GAMUT_TOL,
        )
    again = bright[outer]
    if again.numel():
        sub = tuple(x[again] for x in grid)
        step = 0.5
        last = torch.zeros_like(sub[0])
        y_sub = lightness_terms(f_inv(sub[0]))
        for k in range(1, int(_LUT_C_MAX / step) + 1):
            c = torch.full_like(last, k * step)
            last = torch.where(
                in_gamut(_chroma_linear(sub[0], y_sub, sub[1], sub[2], c), GAMUT_TOL), c, last
            )
        lo[again] = _bisect_boundary(*sub, last, last + step, steps - 8)
    table = lo.reshape(n_l, n_hue)
    return torch.cat([table, table[:, :1]], dim=1).to(torch.float32)


def _chroma_linear(
    fy: Tensor, y_terms: list[Tensor], a: Tensor, b: Tensor, scale: Tensor
) -> Tensor:
    """Linear RGB (3, N) of the colours (L*, a* scale, b* scale), L* given as ``fy`` =
    (L* + 16) / 116 and its :func:`~napari_chromagan.color.fastlab.lightness_terms`. With a unit
    hue vector for (a, b), ``scale`` is the chroma."""
    return lab_linear(fy, y_terms, a * scale, b * scale)


def _bisect_boundary(
    fy: Tensor, cos: Tensor, sin: Tensor, lo: Tensor, hi: Tensor, steps: int
) -> Tensor:
    """Chroma between ``lo`` (in gamut) and ``hi`` (out) where the ray crosses the boundary."""
    y_terms = lightness_terms(f_inv(fy))
    for _ in range(steps):
        mid = (lo + hi) * 0.5
        ok = in_gamut(_chroma_linear(fy, y_terms, cos, sin, mid), GAMUT_TOL)
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return lo


def table_chroma_scale(L: Tensor, a: Tensor, b: Tensor, table: Tensor) -> Tensor:
    """Chroma scale in [0, 1] that brings (L*, a*, b*) onto the gamut boundary of ``table``.

    ``L``, ``a``, ``b``: float32 (N,) (``L`` is not modified); ``table``: :func:`gamut_table`.
    Bilinear interpolation in (L*, hue); pixels already inside get a scale of 1.
    """
    rows = L.clamp(0.0, 100.0).mul_((_LUT_L - 1) / 100.0)
    i0 = rows.floor().clamp_(max=_LUT_L - 2)
    fl = rows.sub_(i0)
    cols = torch.atan2(b, a).mul_(_LUT_HUE / (2 * math.pi)).remainder_(_LUT_HUE)
    j0 = cols.floor().clamp_(max=_LUT_HUE - 1)
    fh = cols.sub_(j0)
    width = _LUT_HUE + 1
    base = i0.long().mul_(width).add_(j0.long())
    flat = table.reshape(-1)

    def at(offset: int) -> Tensor:  # index_select: several times faster than flat[...] here
        return flat.index_select(0, base if offset == 0 else base + offset)

    low = torch.lerp(at(0), at(1), fh)
    high = torch.lerp(at(width), at(width + 1), fh)
    c_max = torch.lerp(low, high, fl)
    return c_max.div_(torch.hypot(a, b).clamp_min_(1e-6)).clamp_(max=1.0)

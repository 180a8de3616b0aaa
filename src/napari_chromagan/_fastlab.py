"""Fast L*-preserving gamut fitting and Lab -> sRGB for live previews (used by :mod:`.blend`).

One fused float32 Lab -> linear-RGB pass in planar layout, and a gamut fit that looks the
outermost in-gamut chroma up in a (L*, hue) table instead of bisecting every out-of-gamut pixel;
see :mod:`napari_chromagan.blend`'s docstring for the measured speed and accuracy against the
engine's :func:`~napari_chromagan.color.fit_chroma_to_gamut`. No Qt, no napari.
"""

from __future__ import annotations

import math
import threading
import warnings
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from .color import _constants

_GAMUT_TOL = 1e-6  # as color.fit_chroma_to_gamut: linear-RGB slack before a colour is out of gamut
_FIT_SLACK = 1e-3  # overshoot of the table fit left to clipping (L* moves by less than 0.1)
_LUT_L, _LUT_HUE = 512, 2048  # gamut table resolution: L* steps over [0, 100], hue steps over 360°
_LUT_C_MAX = 140.0  # above the largest sRGB chroma (about 134, at blue)
_LUT_STEPS = 17  # bisection steps: 140 / 2**17 = 0.001 chroma units

# CIE Lab companding inverse (skimage's constants, as in color.py)
_T0 = 0.2068966
_K = 16.0 / 116.0
_TOE = 1.0 / 7.787

def _finv(t: Tensor) -> Tensor:
    """Inverse CIE companding with skimage's linear toe (color._f_inv), in fewer passes.

    The toe (t <= 0.2069: L* below 8, or X or Z that small, in deep blues and yellows) is rare
    in most planes, so it is patched in only where present.
    """
    cube = torch.pow(t, 3)
    toe = t <= _T0
    if toe.any():
        cube = torch.where(toe, (t - _K) * _TOE, cube)
    return cube


def _rgb_from_f() -> list[list[float]]:
    """Rows of rgb_from_xyz * white: linear RGB = M @ (f_inv(fx), f_inv(fy), f_inv(fz))."""
    _, rgb_from_xyz, white = _constants(torch.device("cpu"), torch.float64)
    return (rgb_from_xyz * white[None, :]).tolist()


_M = _rgb_from_f()


def _as_tensor(x: np.ndarray, device: torch.device) -> Tensor:
    """float32 tensor on ``device``, sharing memory with ``x`` where it can (read-only too:
    nothing here writes into its inputs)."""
    x = np.asarray(x, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the given NumPy array is not writable"
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def _y_terms(Y: Tensor) -> list[Tensor]:
    """The Y column of the matrix applied: what each linear RGB channel gets from L* alone."""
    return [Y * my for _, my, _ in _M]


def _combine(fx: Tensor, fz: Tensor, y_terms: list[Tensor], out: Tensor | None = None) -> Tensor:
    """Linear RGB (3, N), unclipped, from fx, fz (fz >= 0 modified in place) and :func:`_y_terms`."""
    X, Z = _finv(fx), _finv(fz.clamp_min_(0.0))  # skimage clips z at 0
    if out is None:
        out = torch.empty((3, fx.numel()), dtype=fx.dtype, device=fx.device)
    for i, (mx, _, mz) in enumerate(_M):
        torch.add(y_terms[i], X, alpha=mx, out=out[i]).add_(Z, alpha=mz)
    return out


def _linear(fy: Tensor, Y: Tensor, a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """Planar Lab -> linear RGB (unclipped): (3, N) from fy = (L* + 16) / 116, Y = f_inv(fy)."""
    fx = torch.add(fy, a, alpha=1.0 / 500.0)
    fz = torch.add(fy, b, alpha=-1.0 / 200.0)
    return _combine(fx, fz, _y_terms(Y), out)


def _inside(lin: Tensor, tol: float = _GAMUT_TOL) -> Tensor:
    """Whether each pixel of linear RGB (3, N) is in gamut, up to ``tol`` (bool (N,))."""
    r, g, b = lin.unbind(0)  # element-wise chains: much faster than aminmax(dim=0) here
    lo = torch.minimum(torch.minimum(r, g), b)
    hi = torch.maximum(torch.maximum(r, g), b)
    return (lo >= -tol) & (hi <= 1.0 + tol)


def _where_false(mask: Tensor) -> Tensor:
    """Indices (int64 (n,)) where ``mask`` is False."""
    if mask.device.type == "cpu":  # numpy's flatnonzero is about 10x faster than torch.nonzero here
        return torch.from_numpy(np.flatnonzero(~mask.numpy()))
    return torch.nonzero(~mask).squeeze(1)


_table_lock = threading.Lock()


def prepare_gamut_table(device: str | torch.device = "cpu") -> None:
    """Build the gamut table for ``device`` now (about half a second, once per process).

    Rendering builds it on first use anyway; a widget calls this in a background thread when it
    opens, so that the first slider move is as fast as the next ones.
    """
    _gamut_table(torch.device(device))


def _gamut_table(device: torch.device) -> Tensor:
    with _table_lock:  # a second caller waits for the first build instead of repeating it
        return _max_chroma_table(device)


@lru_cache(maxsize=4)
def _max_chroma_table(device: torch.device) -> Tensor:
    """The largest in-gamut chroma per (L*, hue): float32 (_LUT_L, _LUT_HUE + 1) on ``device``.

    Row i is L* = 100 i / (_LUT_L - 1); column j is hue 2 pi j / _LUT_HUE (the last column
    repeats the first, so interpolation needs no wrap-around). Found by bisection (to 0.001
    chroma units) with the same in-gamut test as
    :func:`~napari_chromagan.color.fit_chroma_to_gamut`; about 0.3 s of CPU, once per process
    and device.
    """
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
    probe_y = _y_terms(_finv(fy))
    outer = torch.zeros_like(fy, dtype=torch.bool)
    for j in range(1, 25):
        outer |= _inside(
            _chroma_linear(fy, probe_y, cos, sin, lo_b + (_LUT_C_MAX - lo_b) * (j / 25))
        )
    again = bright[outer]
    if again.numel():
        sub = tuple(x[again] for x in grid)
        step = 0.5
        last = torch.zeros_like(sub[0])
        y_sub = _y_terms(_finv(sub[0]))
        for k in range(1, int(_LUT_C_MAX / step) + 1):
            c = torch.full_like(last, k * step)
            last = torch.where(_inside(_chroma_linear(sub[0], y_sub, sub[1], sub[2], c)), c, last)
        lo[again] = _bisect_boundary(*sub, last, last + step, steps - 8)
    table = lo.reshape(n_l, n_hue)
    return torch.cat([table, table[:, :1]], dim=1).to(torch.float32)


def _chroma_linear(
    fy: Tensor, y_terms: list[Tensor], cos: Tensor, sin: Tensor, chroma: Tensor
) -> Tensor:
    fx = torch.add(fy, cos * chroma, alpha=1.0 / 500.0)
    fz = torch.add(fy, sin * chroma, alpha=-1.0 / 200.0)
    return _combine(fx, fz, y_terms)


def _bisect_boundary(
    fy: Tensor, cos: Tensor, sin: Tensor, lo: Tensor, hi: Tensor, steps: int
) -> Tensor:
    """Chroma between ``lo`` (in gamut) and ``hi`` (out) where the ray crosses the boundary."""
    y_terms = _y_terms(_finv(fy))
    for _ in range(steps):
        mid = (lo + hi) * 0.5
        ok = _inside(_chroma_linear(fy, y_terms, cos, sin, mid))
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return lo


def _fit_scale(L: Tensor, a: Tensor, b: Tensor, table: Tensor) -> Tensor:
    """Chroma scale in [0, 1] that brings (L, a, b) onto the gamut boundary (bilinear table look-up)."""
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


def _encode(lin: Tensor) -> Tensor:
    """Linear RGB in [0, 1] -> sRGB * 255 + 0.5 (so that truncation rounds half up), float.

    The power branch lies below the linear toe's line above the junction (its slope there,
    12.73, is below 12.92, and it is concave), and the clamped power branch is above the line
    below the junction: so the minimum of the two is the piecewise curve, without a mask.
    """
    power = lin.clamp_min(0.0031308).pow_(1 / 2.4).mul_(1.055 * 255.0).sub_(0.055 * 255.0 - 0.5)
    return torch.minimum(power, lin.mul(12.92 * 255.0).add_(0.5), out=power)


def _quantize(v: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """(3, N) float from _encode -> uint8 numpy ``shape + (3,)`` (truncation: v >= 0.5)."""
    planar = v.to(
        torch.uint8
    )  # then interleave: stack is several times faster than .T.contiguous()
    return torch.stack(planar.unbind(0), dim=1).reshape(*shape, 3).cpu().numpy()

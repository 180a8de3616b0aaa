"""Fused kernels for Lab -> linear RGB -> 8-bit sRGB in planar layout, in the inputs' float
dtype (no Qt, no napari).

The building blocks of the renderer (both methods: :func:`napari_chromagan.color.render.render_lab`,
:class:`napari_chromagan.color.render.PlaneRenderer`), of the exact gamut fit and of the gamut table
(:mod:`napari_chromagan.color.gamut`). Pixels are planar: one tensor of N values
per quantity, linear RGB as (3, N). Where :mod:`napari_chromagan.color.lab` writes each conversion
once for any layout, device and dtype (and autograd), these do one pass with fewer temporaries
and keep what depends on L* alone (:func:`lightness_terms`), so that a plane re-rendered with
other chroma costs one pass. Same constants and formulas as :mod:`napari_chromagan.color.lab`;
:mod:`napari_chromagan.color.render`'s tests check the two against each other.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from napari_chromagan.color.lab import srgb_constants

__all__ = [
    "as_float32_tensor",
    "encode_srgb8",
    "f_inv",
    "false_indices",
    "in_gamut",
    "lab_linear",
    "lightness_terms",
    "linear_rgb",
    "quantize",
]

# CIE Lab companding inverse (skimage's constants, as in color.py)
_T0 = 0.2068966
_K = 16.0 / 116.0
_TOE = 1.0 / 7.787


def f_inv(t: Tensor) -> Tensor:
    """Inverse CIE companding with skimage's linear toe (as :mod:`.color`), in fewer passes.

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
    _, rgb_from_xyz, white = srgb_constants(torch.device("cpu"), torch.float64)
    return (rgb_from_xyz * white[None, :]).tolist()


_M = _rgb_from_f()


def as_float32_tensor(x: np.ndarray, device: torch.device) -> Tensor:
    """float32 tensor on ``device``, sharing memory with ``x`` where it can (read-only too:
    nothing here writes into its inputs)."""
    x = np.asarray(x, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the given NumPy array is not writable"
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def lightness_terms(Y: Tensor) -> list[Tensor]:
    """What each linear RGB channel gets from L* alone (``Y = f_inv((L* + 16) / 116)``)."""
    return [Y * my for _, my, _ in _M]


def linear_rgb(fx: Tensor, fz: Tensor, y_terms: list[Tensor], out: Tensor | None = None) -> Tensor:
    """Linear RGB (3, N), unclipped, from fx = fy + a*/500, fz = fy - b*/200 and
    :func:`lightness_terms`. ``fz`` is clipped at 0 in place (skimage clips z at 0)."""
    X, Z = f_inv(fx), f_inv(fz.clamp_min_(0.0))
    if out is None:
        out = torch.empty((3, fx.numel()), dtype=fx.dtype, device=fx.device)
    for i, (mx, _, mz) in enumerate(_M):
        torch.add(y_terms[i], X, alpha=mx, out=out[i]).add_(Z, alpha=mz)
    return out


def lab_linear(fy: Tensor, y_terms: list[Tensor], a: Tensor, b: Tensor) -> Tensor:
    """Linear RGB (3, N) of L* (given as ``fy`` = (L* + 16) / 116 and its
    :func:`lightness_terms`) with a*, b* (N,)."""
    return linear_rgb(
        torch.add(fy, a, alpha=1.0 / 500.0), torch.add(fy, b, alpha=-1.0 / 200.0), y_terms
    )


def in_gamut(lin: Tensor, tol: float) -> Tensor:
    """Whether each pixel of linear RGB (3, N) lies in [-tol, 1 + tol] (bool (N,))."""
    r, g, b = lin.unbind(0)  # element-wise chains: much faster than aminmax(dim=0) here
    lo = torch.minimum(torch.minimum(r, g), b)
    hi = torch.maximum(torch.maximum(r, g), b)
    return (lo >= -tol) & (hi <= 1.0 + tol)


def false_indices(mask: Tensor) -> Tensor:
    """Indices (int64 (n,)) where ``mask`` (bool (N,)) is False."""
    if mask.device.type == "cpu":  # numpy's flatnonzero is about 10x faster than torch.nonzero here
        return torch.from_numpy(np.flatnonzero(~mask.numpy()))
    return torch.nonzero(~mask).squeeze(1)


def encode_srgb8(lin: Tensor) -> Tensor:
    """Linear RGB in [0, 1] -> sRGB * 255 + 0.5 (so that truncation rounds half up), float.

    The power branch lies below the linear toe's line above the junction (its slope there,
    12.73, is below 12.92, and it is concave), and the clamped power branch is above the line
    below the junction: so the minimum of the two is the piecewise curve, without a mask.
    """
    power = lin.clamp_min(0.0031308).pow_(1 / 2.4).mul_(1.055 * 255.0).sub_(0.055 * 255.0 - 0.5)
    return torch.minimum(power, lin.mul(12.92 * 255.0).add_(0.5), out=power)


def quantize(v: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """(3, N) float from :func:`encode_srgb8` -> uint8 numpy ``shape + (3,)`` (truncation: v >= 0.5)."""
    planar = v.to(torch.uint8)
    # interleave: stack is several times faster than .T.contiguous()
    return torch.stack(planar.unbind(0), dim=1).reshape(*shape, 3).cpu().numpy()

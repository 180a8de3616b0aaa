"""sRGB (D65) <-> CIE L*a*b* conversions on torch tensors.

Conventions
-----------
* RGB is gamma-encoded sRGB in [0, 1] (floating point), converted exactly as
  :func:`skimage.color.rgb2lab` / :func:`skimage.color.lab2rgb` do with their defaults
  (illuminant D65, 2-degree observer): same sRGB->XYZ matrix and inverse, same white point
  (0.95047, 1.0, 1.08883), same gamma and Lab thresholds (0.04045, 0.0031308, 0.008856,
  7.787 * t + 16 / 116, 0.2068966).
* L* lies in [0, 100]; a* and b* are roughly in [-128, 127].
* The channel axis is ``dim`` (default ``-3``, i.e. CHW / NCHW); pass ``dim=-1`` for HWC.
* Inputs may live on any device (CPU, CUDA, MPS). Maths runs in at least float32 (float64
  inputs stay float64); results are cast back to the input dtype. No numpy is involved.
* How a network encodes a*/b* (e.g. ``a* = 255 * s - 128`` for a sigmoid output ``s``) is the
  caller's business, not this module's.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "lab_to_linear_rgb",
    "lab_to_rgb",
    "lab_to_rgb_uint8",
    "lightness_to_gray",
    "rgb_to_lab",
    "rgb_to_luminance_L",
    "srgb_constants",
]

# skimage.color.colorconv.xyz_from_rgb (sRGB specification); its inverse is rgb_from_xyz.
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)  # skimage's D65 / observer "2" tristimulus values


@lru_cache(maxsize=32)
def srgb_constants(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(xyz_from_rgb, rgb_from_xyz, white) on ``device``/``dtype``, inverted in float64 on CPU.

    The 3x3 sRGB -> XYZ matrix, its inverse and the D65 white point that every conversion here
    uses (cached; do not modify the tensors).
    """
    m = torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64)
    mats = (m, torch.linalg.inv(m), torch.tensor(_WHITE_D65, dtype=torch.float64))
    return tuple(t.to(dtype).to(device) for t in mats)  # type: ignore[return-value]


def _prepare(x: Tensor, dim: int, channels: int, name: str) -> tuple[Tensor, int]:
    """Check ``x``, cast it to the compute dtype and return it with ``dim`` made non-negative."""
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    dim = dim % x.ndim if x.ndim else dim
    if x.ndim == 0 or x.shape[dim] != channels:
        raise ValueError(f"{name} needs {channels} channels along dim {dim}, got {tuple(x.shape)}")
    return x.to(torch.promote_types(x.dtype, torch.float32)), dim


def _matmul(m: Tensor, x: Tensor, dim: int) -> Tensor:
    """Apply the 3x3 matrix ``m`` to the channel axis ``dim`` of ``x``."""
    return torch.movedim(torch.movedim(x, dim, -1) @ m.T, -1, dim)


def _srgb_to_linear(c: Tensor) -> Tensor:
    return torch.where(c > 0.04045, ((c.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)


def _linear_to_srgb(c: Tensor) -> Tensor:
    hi = 1.055 * c.clamp_min(0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(c > 0.0031308, hi, c * 12.92)


def _f(t: Tensor) -> Tensor:
    """CIE Lab companding (cube root with skimage's linear toe)."""
    return torch.where(t > 0.008856, t.clamp_min(0.008856) ** (1 / 3), 7.787 * t + 16 / 116)


def _f_inv(t: Tensor) -> Tensor:
    return torch.where(t > 0.2068966, t.clamp_min(0.2068966) ** 3, (t - 16 / 116) / 7.787)


def _lab_to_linear(lab: Tensor, dim: int) -> Tensor:
    """Lab (compute dtype, channel axis ``dim``) -> linear RGB, unclipped."""
    _, rgb_from_xyz, white = srgb_constants(lab.device, lab.dtype)
    L, a, b = lab.unbind(dim)
    fy = (L + 16.0) / 116.0
    # skimage clips negative z to 0 (and warns); we clip silently.
    fxyz = torch.stack([a / 500.0 + fy, fy, (fy - b / 200.0).clamp_min(0.0)], dim=-1)
    xyz = torch.movedim(_f_inv(fxyz) * white, -1, dim)
    return _matmul(rgb_from_xyz, xyz, dim)


def lab_to_linear_rgb(lab: Tensor, dim: int = -3) -> Tensor:
    """Convert CIE L*a*b* to linear (not gamma-encoded) sRGB, unclipped.

    The gamut test of :mod:`napari_chromagan.color.gamut`: a colour is in the sRGB gamut when all three
    of these values lie in [0, 1]. Negative z is clipped to 0 silently, as in :func:`lab_to_rgb`.

    Parameters
    ----------
    lab : Tensor
        Floating-point Lab, channels along ``dim``.
    dim : int, optional
        Channel axis (default -3).

    Returns
    -------
    Tensor
        Linear RGB, same shape and dtype as ``lab``.
    """
    x, dim = _prepare(lab, dim, 3, "lab")
    return _lab_to_linear(x, dim).to(lab.dtype)


def rgb_to_lab(rgb: Tensor, dim: int = -3) -> Tensor:
    """Convert sRGB to CIE L*a*b* (D65, 2-degree observer), matching ``skimage.color.rgb2lab``.

    Parameters
    ----------
    rgb : Tensor
        Floating-point sRGB, nominally in [0, 1], shape ``(..., 3, ...)`` with the channels
        along ``dim``. Values outside [0, 1] are extrapolated, not clipped.
    dim : int, optional
        Channel axis (default -3, CHW / NCHW; use -1 for HWC).

    Returns
    -------
    Tensor
        Same shape and dtype as ``rgb``: L* in [0, 100], a*, b* roughly in [-128, 127].
    """
    x, dim = _prepare(rgb, dim, 3, "rgb")
    xyz_from_rgb, _, white = srgb_constants(x.device, x.dtype)
    xyz = torch.movedim(_matmul(xyz_from_rgb, _srgb_to_linear(x), dim), dim, -1)
    fx, fy, fz = _f(xyz / white).unbind(-1)
    lab = torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=dim)
    return lab.to(rgb.dtype)


def rgb_to_luminance_L(rgb: Tensor, dim: int = -3) -> Tensor:
    """Return only the L* channel of :func:`rgb_to_lab` (cheaper: only Y is computed).

    Parameters
    ----------
    rgb : Tensor
        Floating-point sRGB in [0, 1], channels (3) along ``dim``.
    dim : int, optional
        Channel axis (default -3).

    Returns
    -------
    Tensor
        L* in [0, 100], same dtype as ``rgb``, shape of ``rgb`` with axis ``dim`` removed.
    """
    x, dim = _prepare(rgb, dim, 3, "rgb")
    xyz_from_rgb, _, white = srgb_constants(x.device, x.dtype)
    y = (torch.movedim(_srgb_to_linear(x), dim, -1) @ xyz_from_rgb[1]) / white[1]
    return (116.0 * _f(y) - 16.0).to(rgb.dtype)


def lightness_to_gray(L: Tensor) -> Tensor:
    """The sRGB gray value in [0, 1] of each lightness L* (a* = b* = 0), same shape as ``L``.

    ``L`` is L*/100 in [0, 1], as the generator takes it. For a neutral colour X, Y and Z are the
    white point's times the same factor, so linear RGB is that factor on every channel.
    """
    return _linear_to_srgb(_f_inv((L.clamp(0.0, 1.0) * 100.0 + 16.0) / 116.0)).clamp(0.0, 1.0)


def lab_to_rgb(lab: Tensor, dim: int = -3, clip: bool = True) -> Tensor:
    """Convert CIE L*a*b* (D65, 2-degree observer) to sRGB, matching ``skimage.color.lab2rgb``.

    Parameters
    ----------
    lab : Tensor
        Floating-point Lab (L* in [0, 100], a*, b* roughly [-128, 127]), channels along ``dim``.
    dim : int, optional
        Channel axis (default -3).
    clip : bool, optional
        Clip the result to [0, 1] as skimage does (default). With ``False``, out-of-gamut
        colours come back outside [0, 1]. Negative z is clipped to 0 silently either way.

    Returns
    -------
    Tensor
        sRGB, same shape and dtype as ``lab``; in [0, 1] when ``clip`` is true.
    """
    x, dim = _prepare(lab, dim, 3, "lab")
    rgb = _linear_to_srgb(_lab_to_linear(x, dim))
    return (rgb.clamp(0.0, 1.0) if clip else rgb).to(lab.dtype)


def lab_to_rgb_uint8(lab: Tensor, dim: int = -3) -> Tensor:
    """Convert Lab to 8-bit sRGB: :func:`lab_to_rgb` clipped to [0, 1], times 255, rounded half-up.

    Returns
    -------
    Tensor
        ``torch.uint8`` tensor with the shape of ``lab``, values in [0, 255].
    """
    rgb = lab_to_rgb(lab.to(torch.promote_types(lab.dtype, torch.float32)), dim, clip=True)
    return (rgb * 255.0 + 0.5).floor().to(torch.uint8)

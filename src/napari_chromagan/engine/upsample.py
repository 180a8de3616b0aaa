"""The engine's chroma upsampling: a bilinear resize computed strip by strip of rows."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["bilinear_rows"]


def bilinear_rows(small: torch.Tensor, H: int, W: int) -> Callable[..., torch.Tensor]:
    """The engine's chroma upsampling, strip by strip: rows of a bilinear resize to (H, W).

    Bilinear resizing is separable: the columns of ``small`` are resized once for all planes
    (to h x W), then each strip of output rows takes its two source rows. Identical to
    ``F.interpolate(small, (H, W), mode="bilinear", align_corners=False)`` in one go (antialiased
    where it shrinks), with a fraction of the memory. The engine upsamples the network's a*b*
    with it; :mod:`napari_chromagan.edit.hints` its chroma corrections.

    Parameters
    ----------
    small : Tensor
        float (n, c, h, w) on any device.
    H, W : int
        The full-resolution height and width.

    Returns
    -------
    callable
        ``rows(r0, r1, planes=slice(None))`` -> float (n', c, r1 - r0, W): rows r0..r1 of the
        resized planes ``planes``, on ``small``'s device.
    """
    h, w = small.shape[-2:]
    cols = F.interpolate(small, size=(h, W), mode="bilinear", align_corners=False, antialias=W < w)
    shrink = H < h
    if shrink:  # shrinking rows: resize whole (at most h x W, small) with antialiasing
        cols = F.interpolate(
            cols, size=(H, W), mode="bilinear", align_corners=False, antialias=True
        )
    # The network's output is channels_last; row gathers and the per-channel colour maths are
    # several times faster on planar (contiguous) data, and cols is small (n x c x h x W).
    cols = cols.contiguous()

    def rows(r0: int, r1: int, planes: slice = slice(None)) -> torch.Tensor:
        return cols[planes, :, r0:r1] if shrink else _rows_bilinear(cols[planes], r0, r1, H)

    return rows


def _rows_bilinear(cols: torch.Tensor, r0: int, r1: int, H: int) -> torch.Tensor:
    """Rows r0..r1 of a bilinear (align_corners=False) resize of ``cols`` (..., S, W) to height H."""
    S = cols.shape[-2]
    y = (torch.arange(r0, r1, device=cols.device, dtype=torch.float64) + 0.5) * (S / H) - 0.5
    y = y.clamp_(min=0.0)
    y0 = y.floor().long().clamp_(max=S - 1)
    y1 = (y0 + 1).clamp_(max=S - 1)
    w = (y - y0).to(cols.dtype)[:, None]
    return cols.index_select(-2, y0) * (1 - w) + cols.index_select(-2, y1) * w

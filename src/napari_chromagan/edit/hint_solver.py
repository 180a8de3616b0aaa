"""The solver behind :mod:`napari_chromagan.edit.hints`: one plane's chroma change from its hints.

Colourisation by optimisation (Levin, Lischinski and Weiss, SIGGRAPH 2004), solved for the
*change* ``d`` of the network's a*b* (two channels, one matrix), at a working resolution::

    minimise   sum_{4-neighbours i~j} w_ij (d_i - d_j)^2                   smooth where L* is smooth
             + lambda sum_i d_i^2                                          the network's own colours
             + sum_i (P m_i + 25 lambda g_i) (d_i - c_i)^2                  the hints

    w_ij = exp(-dL_ij^2 / (2 edge^2))
    c_i  = strength * (hint a*b* - network a*b*_i)

so ``(Laplacian(w) + diag(lambda + P m + 25 lambda g)) d = (P m + 25 lambda g) c``, one sparse
symmetric system per plane, factorised with SuperLU (``scipy.sparse.linalg.splu``).

* ``m`` marks the hint pixels (a point's disk, edge-aware; a stroke's or a label's pixels), P = 100.
* ``g`` is a gentle pull of every pixel towards the colours of the hints near it *along the
  image*: the sum over hints k of exp(-(d_k / reach)^2), with d_k the edge-aware geodesic
  distance to hint k (Dijkstra on the pixel grid with diagonals, a step costing 1 / w_ij), capped
  at 1; its target is the hints' colours averaged by exp(-(d_k / reach)^2) / (d_k + 1). Without
  it, one point cannot fill its object: a point's hold on a 2D region grows only with the log of
  the region's size, while the network term grows with its area (a single red click left a
  70-pixel disc half red). With it, one hint fills its object out to about 1.5-2 reach and
  blends smoothly with other hints in the same region; the Laplacian stops it at lightness
  edges and smooths it.
* ``lambda`` is the network's weight: beyond the pull, a change fades within 2 % of the image
  side; in Labels mode it is 1 / feather^2 and there is no pull (a label is filled, then fades
  out within ``feather`` pixels beyond its border).
* ``dL_ij``, the lightness step between neighbours, also counts the two-pixel steps that
  contain it: natural edges are blurred over a few pixels (downsampling blurs them more), and
  as ramps of small steps they would let colour through (see ``_grid_edges``).

Solving for the change rather than for the colours (Levin's unknowns) keeps the network's own
chroma texture where a hint reaches, and makes "no hints" exactly the network's result.

The working resolution: L* and a*b* are area-averaged to about ``working_pixels`` pixels (the
same working grid for any input size, so a hint behaves alike on a 1024^2 and a 4096^2 image),
and the change is brought back to full resolution *guided by the full-resolution L**: the change
is sorted into a bilateral grid (lightness bins), each bin is upsampled with the engine's own
bilinear chroma upsampling (:func:`~napari_chromagan.engine.colorize.bilinear_rows`), row strip by row
strip, and every full-resolution pixel reads the bins at its own L* (see :class:`PlaneChange`).
So a change stops at the full-resolution edge, not at the working pixel's. (A fast guided
filter, A L* + B fitted per window, was tried first: where a working pixel straddles a soft edge
the change is not linear in L*, and it coloured 25 units 1-5 px across the edge.)

Why SuperLU at 2^16 working pixels by default: the system is badly conditioned (regions enclosed
by edges couple to the rest by weights near e^-30, and lambda is small), which direct
factorisation does not mind. On a 1 Mpixel photograph (2 loaded CPU cores, 2026-12-01) SuperLU
took 8-17 s, pyamg's classical AMG preconditioning CG 2 s of set-up plus 2 s per channel to reach
0.1 a*b* units (smoothed aggregation and Jacobi-preconditioned CG longer), against 0.25 s for
SuperLU at 2^16 pixels; pyamg did not earn a dependency. 2^16 working pixels (256 x 256) is
finer than the network's own 224 x 224 chroma, and measured edges better than finer grids (a
natural edge is a steeper step there); ``bench/bench_hints.py`` measures the rest.

No Qt, no napari.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from napari_chromagan.engine.upsample import bilinear_rows

if TYPE_CHECKING:  # pragma: no cover
    from napari_chromagan.edit.hints import ColorHints, HintParams

__all__ = ["PlaneChange", "plane_change", "working_shape"]

_PIN = 100.0  # data weight of a hint pixel, against neighbour weights of at most 1
_NEGLIGIBLE = 0.01  # a*b* changes below this are dropped, so untouched pixels stay bit-identical
_BIN_EDGES = 2.0  # lightness bins of the upsampling grid, in units of HintParams.edge
_MIN_BIN_WEIGHT = 0.05  # below this, no nearby working pixel has the lightness: bilinear
_PULL = 25.0  # the geodesic pull towards hints near a pixel, against the network's weight
_NETWORK_LENGTH = 0.02  # the network term's decay length beyond the pull, as a fraction of the side
_STEPS = ((0, 1), (1, 0), (1, 1), (1, -1))  # the geodesic's neighbours: 4 straight, 4 diagonal
_MAX_EXPONENT = 60.0  # affinities below e^-60 are e^-60: a wall, and a finite geodesic step


def working_shape(H: int, W: int, pixels: int) -> tuple[int, int]:
    """The (h, w) a plane of (H, W) is solved at: about ``pixels`` pixels, same aspect, never larger."""
    if H * W <= pixels:
        return H, W
    s = math.sqrt(H * W / pixels)
    return max(1, round(H / s)), max(1, round(W / s))


def _area(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-average (C, H, W) (or (H, W)) float planes to ``shape``: float64 (C, h, w)."""
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    if t.ndim == 2:
        t = t[None]
    if tuple(t.shape[-2:]) == tuple(shape):
        return t.double().numpy()
    return F.adaptive_avg_pool2d(t[None], shape)[0].double().numpy()


@dataclass
class _Pins:
    """Hint pixels at working resolution.

    ``weight`` float64 (h, w) in [0, 1] and ``target`` float64 (2, h, w) (the a*b* asked for,
    where weight > 0); ``groups``: for each hint (a point, or a mask label), the flat indices of
    its pixels and its a*b*, the sources of its geodesic pull.
    """

    weight: np.ndarray
    target: np.ndarray
    groups: list[tuple[np.ndarray, np.ndarray]]


def _rasterise(
    hints: ColorHints,
    index: tuple[int, ...],
    L_w: np.ndarray,
    full: tuple[int, int],
    params: HintParams,
) -> _Pins | None:
    """The hints of plane ``index`` as working-resolution pins; None when none fall on it."""
    h, w = L_w.shape
    H, W = full
    sy, sx = H / h, W / w
    weight = np.zeros((h, w))
    total = np.zeros((2, h, w))
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    (rc, ab, radius) = hints.points_on(index)
    k = -0.5 / (params.edge * params.edge)
    for (r, c), colour, rad in zip(rc, ab, radius, strict=True):
        y, x = (r + 0.5) / sy - 0.5, (c + 0.5) / sx - 0.5
        if not (-0.5 <= y < h - 0.5 and -0.5 <= x < w - 0.5):
            continue  # off the plane
        rw = max(rad / math.sqrt(sy * sx), 0.75)
        y0, y1 = max(0, math.floor(y - rw)), min(h, math.ceil(y + rw) + 1)
        x0, x1 = max(0, math.floor(x - rw)), min(w, math.ceil(x + rw) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        disk = (yy - y) ** 2 + (xx - x) ** 2 <= rw * rw
        cy, cx = min(h - 1, max(0, round(y))), min(w - 1, max(0, round(x)))
        # the hint's own pixels are edge-aware too: a point put next to an edge colours its side
        m = disk * np.exp(k * (L_w[y0:y1, x0:x1] - L_w[cy, cx]) ** 2)
        weight[y0:y1, x0:x1] += m
        total[:, y0:y1, x0:x1] += m * colour[:, None, None].astype(np.float64)
        sources = ((yy * w + xx)[m >= 0.5]).tolist()
        groups.append((np.unique([cy * w + cx, *sources]), colour.astype(np.float64)))
    mask = hints.mask_on(index)
    if mask is not None:
        pos = np.minimum(np.searchsorted(hints.mask_labels, mask), len(hints.mask_labels) - 1)
        hit = hints.mask_labels[pos] == mask
        if hit.any():
            colour = hints.mask_ab[pos]  # (H, W, 2)
            planes = np.stack([hit, hit * colour[..., 0], hit * colour[..., 1]]).astype(np.float32)
            cover, ta, tb = _area(planes, (h, w))
            # a stroke thinner than a working pixel still pins it fully; a label's border softly
            m = cover if hints.fill else np.minimum(1.0, cover * max(sy, sx))
            mean = np.stack([ta, tb]) / np.maximum(cover, 1e-12)
            weight += m
            total += m * mean
            if not hints.fill:
                rows, cols = np.nonzero(hit)
                flat = np.minimum((rows / sy).astype(np.int64), h - 1) * w + np.minimum(
                    (cols / sx).astype(np.int64), w - 1
                )
                which = pos[rows, cols]
                for label in np.unique(which):
                    groups.append(
                        (np.unique(flat[which == label]), hints.mask_ab[label].astype(np.float64))
                    )
    if not weight.any():
        return None
    target = np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)
    return _Pins(np.minimum(weight, 1.0), target, groups)


def _grid_edges(
    L: np.ndarray,
    edge: float,
    offsets: tuple[tuple[int, int], ...] = ((0, 1), (1, 0)),
    walls: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour pairs (i, j) of the (h, w) grid (flat indices, j = i + offset) and their
    affinities exp(-d^2 / 2 edge^2), float64 in (0, 1].

    d is the larger of the lightness step from i to j and of the two-pixel steps that contain it
    (from i's other neighbour to j, from i to j's other neighbour): natural edges are blurred
    over a few pixels (downsampling blurs them more), and as ramps of small steps they would let
    colour through. For the Laplacian (``walls=False``) the smaller two-pixel step counts, so
    that a pixel beside a sharp edge stays connected to its own side; for the geodesic pull
    (``walls=True``) the larger, so that the pixels *on* a soft edge, whose lightness is in
    between, are no path around it (the Laplacian still colours them from their side).
    """
    h, w = L.shape
    k = -0.5 / (edge * edge)
    P = np.pad(L, 2, mode="edge")

    def shifted(dy: int, dx: int) -> np.ndarray:
        return P[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]

    idx = np.arange(h * w).reshape(h, w)
    rows_i, rows_j, affinities = [], [], []
    for dy, dx in offsets:
        Li, Lj = shifted(0, 0), shifted(dy, dx)
        before = np.abs(Lj - shifted(-dy, -dx))
        after = np.abs(shifted(2 * dy, 2 * dx) - Li)
        span = np.maximum(before, after) if walls else np.minimum(before, after)
        d = np.maximum(np.abs(Lj - Li), span)
        valid = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
        i = idx[valid].ravel()
        rows_i.append(i)
        rows_j.append(i + dy * w + dx)
        affinities.append(np.exp(np.maximum(k * d[valid].ravel() ** 2, -_MAX_EXPONENT)))
    return np.concatenate(rows_i), np.concatenate(rows_j), np.concatenate(affinities)


def _pull(
    L: np.ndarray,
    groups: list[tuple[np.ndarray, np.ndarray]],
    reach: float,
    edge: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's pull towards the hints near it along the image: weight (n,) in [0, 1], the
    sum of exp(-(d_k / reach)^2) over the hints k, and target a*b* (2, n), the hints' colours
    averaged with weights exp(-(d_k / reach)^2) / (d_k + 1).

    d_k is the edge-aware geodesic distance to hint k, in working pixels: a step between
    neighbours costs 1 / affinity = exp(dL^2 / 2 edge^2), 1 to 1.6 where the lightness is
    smooth, about 90 across a step of 3 edge and a wall beyond. Searched up to 3 reach only.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import dijkstra

    n = L.size
    # walls (see _grid_edges), and diagonal steps (cost sqrt 2 over their affinity), so that
    # distances are nearly Euclidean (within 8 %, not up to 41 % longer) where L* is smooth
    i, j, a = _grid_edges(L, edge, _STEPS, walls=True)
    h, w = L.shape
    straight = h * (w - 1) + (h - 1) * w  # _grid_edges lists the straight pairs first
    cost = np.where(np.arange(len(a)) < straight, 1.0, math.sqrt(2.0)) / a
    graph = sp.csr_matrix((cost, (i, j)), shape=(n, n))
    total = np.zeros(n)
    norm = np.zeros(n)
    mixed = np.zeros((2, n))
    for sources, colour in groups:
        dist = dijkstra(graph, directed=False, indices=sources, min_only=True, limit=3.0 * reach)
        near = np.isfinite(dist)
        phi = np.exp(-((dist[near] / reach) ** 2))
        total[near] += phi
        # the colours mix by inverse distance (Shepard), so that each hint's own
        # surroundings take its colour, and colours blend smoothly between hints
        share = phi / (dist[near] + 1.0)
        norm[near] += share
        mixed[:, near] += share * colour[:, None]
    target = np.divide(mixed, norm, out=np.zeros_like(mixed), where=norm > 0)
    return np.minimum(total, 1.0), target


def _solve(
    L_w: np.ndarray, net_w: np.ndarray, pins: _Pins, params: HintParams, fill: bool, scale: float
) -> np.ndarray:
    """The working-resolution change of a*b*: float64 (2, h, w)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    h, w = L_w.shape
    n = h * w
    edges = _grid_edges(L_w, params.edge)
    weight = _PIN * pins.weight.ravel()
    target = pins.target.reshape(2, n)
    if fill:
        lam = 1.0 / max(params.feather / scale, 0.5) ** 2
    else:
        reach = params.reach * max(h, w)
        lam = 1.0 / min(_NETWORK_LENGTH * max(h, w), reach) ** 2
        # Every pixel is drawn towards the colours of the hints near it along the image (edge-
        # aware geodesic distance): so one hint fills its object, which the Laplacian alone
        # cannot do (a point's pull on a 2D region grows only with the log of the region's size,
        # while the network's grows with its area).
        pull, pull_target = _pull(L_w, pins.groups, reach, params.edge)
        pull = _PULL * lam * pull
        both = weight + pull
        target = np.divide(
            weight * target + pull * pull_target, both, out=target.copy(), where=both > 0
        )
        weight = both
    change = params.strength * (target - net_w.reshape(2, n))
    i, j, a = edges
    degree = np.bincount(i, a, n) + np.bincount(j, a, n)
    diagonal = np.arange(n)
    A = sp.csc_matrix(
        (
            np.concatenate([degree + lam + weight, -a, -a]),
            (np.concatenate([diagonal, i, j]), np.concatenate([diagonal, j, i])),
        ),
        shape=(n, n),
    )
    lu = splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    rhs = np.ascontiguousarray((weight * change).T)  # (N, 2)
    return lu.solve(rhs).T.reshape(2, h, w)


class PlaneChange:
    """The full-resolution change of a*b* for one plane, produced in row strips.

    ``reached`` is the range of full-resolution rows (start, stop) that the change can touch;
    :meth:`rows` is exactly 0 elsewhere (and costs nothing there).

    Brought up from the working resolution by slicing a bilateral grid (Chen, Paris and Durand,
    2007) whose spatial part is the engine's bilinear upsampling: the working-resolution change
    is split into lightness bins (hat functions ``_BIN_EDGES`` x ``edge`` wide), each bin and its
    weight are upsampled bilinearly (:func:`~napari_chromagan.engine.colorize.bilinear_rows`), and each
    full-resolution pixel reads the bins at its own L*, linearly interpolated. So a pixel takes
    the change of the nearby working pixels *of its lightness*: on the dark side of an edge, the
    dark neighbours' change, even where one working pixel straddles the edge. Where no nearby
    working pixel has its lightness (a thin line lost in the averaging), plain bilinear.
    """

    def __init__(
        self, delta: np.ndarray, L_w: np.ndarray, full: tuple[int, int], edge: float
    ) -> None:
        self.full = full
        self._exact: np.ndarray | None = None
        # the full-resolution rows the change can reach (the others are exactly 0, not computed)
        H, h = full[0], L_w.shape[0]
        moved = np.flatnonzero(np.abs(delta).max(axis=(0, 2)) >= _NEGLIGIBLE)
        if not len(moved):
            self.reached = (0, 0)
        else:
            self.reached = (
                max(0, math.floor((moved[0] - 1) * H / h)),
                min(H, math.ceil((moved[-1] + 2) * H / h)),
            )
        if tuple(L_w.shape) == tuple(full):
            self._exact = np.ascontiguousarray(delta.transpose(1, 2, 0), np.float32)
            return
        self._step = _BIN_EDGES * edge
        self._low = float(L_w.min())
        self._bins = max(2, math.ceil((float(L_w.max()) - self._low) / self._step) + 1)
        position = (L_w - self._low) / self._step  # in bins
        k = np.arange(self._bins, dtype=np.float64)[:, None, None]
        hat = np.maximum(0.0, 1.0 - np.abs(position[None] - k))  # (K, h, w), sums to 1
        grid = np.concatenate([hat * delta[0], hat * delta[1], hat, delta])  # (3K + 2, h, w)
        # half precision: the strips are memory-bound, and 1e-3 relative is far below what shows
        self._rows = bilinear_rows(torch.from_numpy(grid.astype(np.float16))[None], *full)

    def rows(self, r0: int, r1: int, L: np.ndarray, missing: np.ndarray | None) -> np.ndarray:
        """float32 (r1 - r0, W, 2); exactly 0 where the change is negligible or L* is missing."""
        if r1 <= self.reached[0] or r0 >= self.reached[1]:
            return np.zeros((r1 - r0, self.full[1], 2), np.float32)
        if self._exact is not None:
            q = self._exact[r0:r1].copy()
        else:
            K = self._bins
            up = self._rows(r0, r1)[0]  # (3K + 2, rows, W), float16
            position = (
                torch.from_numpy(np.ascontiguousarray(L[r0:r1], np.float32)) - self._low
            ) / self._step
            position = position.clamp_(0.0, K - 1.0)
            k0 = position.floor().long().clamp_(max=K - 2)
            t = position - k0
            k0 = k0[None]

            def at(offset: int) -> torch.Tensor:  # the bins k0 and k0 + 1 of channel block offset
                lo = up[offset : offset + K].gather(0, k0)[0].float()
                hi = up[offset : offset + K].gather(0, k0 + 1)[0].float()
                return torch.lerp(lo, hi, t)

            weight = at(2 * K)
            bilinear = up[3 * K :].float()
            sliced = torch.stack([at(0), at(K)]) / weight.clamp(min=_MIN_BIN_WEIGHT)
            q = torch.where(weight >= _MIN_BIN_WEIGHT, sliced, bilinear).permute(1, 2, 0).numpy()
        small = (np.abs(q) < _NEGLIGIBLE).all(axis=-1)
        if missing is not None:
            small |= missing[r0:r1]
        q[small] = 0.0
        return q


def plane_change(
    L: np.ndarray, ab: np.ndarray, hints: ColorHints, index: tuple[int, ...], params: HintParams
) -> PlaneChange | None:
    """Solve plane ``index``; None when no hint falls on it."""
    H, W = L.shape
    h, w = working_shape(H, W, params.working_pixels)
    L_w = _area(L, (h, w))[0]
    pins = _rasterise(hints, index, L_w, (H, W), params)
    if pins is None:
        return None
    net_w = _area(np.moveaxis(ab, -1, 0), (h, w))
    delta = _solve(L_w, net_w, pins, params, hints.fill, math.sqrt(H * W / (h * w)))
    return PlaneChange(delta, L_w, (H, W), params.edge)

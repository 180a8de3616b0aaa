"""The renderer: L* and a*b* -> displayable 8-bit sRGB, with one gamut policy (no Qt, no napari).

Everything in the package that shows or writes colours renders through here: the engine
(:mod:`.colorize`), the Chroma blend (:mod:`.blend` and its widget), colour hints (:mod:`.hints`
and its widget) and evaluation (``training/evaluate.py``). Out-of-gamut colours follow the
policy of :mod:`napari_chromagan.color.gamut` (L* and hue kept, chroma scaled onto the boundary).

One function, :func:`render_lab`, with two methods:

``"exact"`` (the default, and the reference)
    :func:`~napari_chromagan.color.gamut.fit_chroma_to_gamut` (bisection per out-of-gamut pixel),
    then :func:`~napari_chromagan.color.lab.lab_to_rgb_uint8`. What the engine writes.
``"table"`` (for live previews)
    One fused float32 pass in planar layout (:mod:`.fastlab`), the gamut fit looked up in the
    (L*, hue) table of :func:`~napari_chromagan.color.gamut.gamut_table`. :class:`PlaneRenderer` is
    this method for one plane rendered again and again (it keeps what depends on L* alone and
    folds a chroma adjustment and a gray blend into the pass); :func:`render_srgb` is it on
    numpy arrays of any shape, in strips of bounded memory.

The table method against the exact one (measured by ``tests/test_render.py``, which asserts
bounds just above these): on random Lab (L* in [0, 100], a*, b* in [-128, 128], 88 % out of
gamut), in-gamut pixels differ by at most one 8-bit level; both keep L* to the 8-bit rounding
(< 0.25) and the hue to 2.2 degrees (chroma above 20); CIE76 Delta E between the two renderings is below 0.92 on
99.9 % of pixels and at most 1.6 away from the yellow cusp (L* > 85, hues 90-112 degrees). Near
the cusp, where the boundary is steepest, the bilinear look-up is off by up to 7.6 on about 4
pixels per million; where a ray of constant hue re-enters the gamut (L* > 92, hues 98-107) the
table keeps the outer, more saturated boundary and the bisection may stop at the inner one (up
to 66 apart). On photographs colourised by the packaged weights: at most one 8-bit level and
Delta E 1.6, on 0.003-0.8 % of the pixels.

Speed (``bench/bench_render.py``, one thread, 1024 x 1024): the table method is about 3 times
as fast as the exact one on a plane with many out-of-gamut pixels (2.3 times on a photograph);
a :class:`PlaneRenderer` re-render after a slider move takes about 35-50 ms of CPU on an idle
core (``tests/test_blend.py``'s perf test).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from napari_chromagan.color.fastlab import (
    as_float32_tensor,
    encode_srgb8,
    f_inv,
    false_indices,
    in_gamut,
    lab_linear,
    lightness_terms,
    linear_rgb,
    quantize,
)
from napari_chromagan.color.gamut import (
    FIT_SLACK,
    GAMUT_TOL,
    fit_chroma_and_linear,
    fit_chroma_to_gamut,
    gamut_table,
    prepare_gamut_table,
    table_chroma_scale,
)

__all__ = [
    "ChromaAdjustment",
    "Method",
    "PlaneRenderer",
    "prepare_gamut_table",
    "render_lab",
    "render_srgb",
]

Method = Literal["exact", "table"]

_STRIP_PIXELS = 1 << 21  # pixels per strip in render_srgb: bounds the temporaries (~40 B/pixel)


class ChromaAdjustment(Protocol):
    """A per-pixel change made while rendering (:class:`~napari_chromagan.edit.blend.BlendParams` is one).

    a*, b* become ``(A a + B b + a_offset, C a + D b + b_offset)`` with ``(A, B, C, D) =
    ab_matrix()`` before the gamut fit; then the gray image (L*, 0, 0) is blended over the
    result in gamma-encoded sRGB with opacity ``gray`` in [0, 1].
    """

    @property
    def a_offset(self) -> float: ...

    @property
    def b_offset(self) -> float: ...

    @property
    def gray(self) -> float: ...

    def ab_matrix(self) -> tuple[float, float, float, float]: ...


class _NoAdjustment:
    a_offset = 0.0
    b_offset = 0.0
    gray = 0.0

    def ab_matrix(self) -> tuple[float, float, float, float]:
        return 1.0, 0.0, 0.0, 1.0


_NONE = _NoAdjustment()


def render_lab(L: Tensor, ab: Tensor, dim: int = -3, method: Method = "exact") -> Tensor:
    """Render L* and a*, b* as 8-bit sRGB, fitting out-of-gamut chroma at constant L* and hue.

    Parameters
    ----------
    L : Tensor
        Floating-point L* in [0, 100], the shape of ``ab`` without axis ``dim``.
    ab : Tensor
        Floating-point a*, b* (before any gamut fit), channels (2) along ``dim``; same device
        as ``L``.
    dim : int, optional
        Channel axis of ``ab`` and of the result (default -3, i.e. (N, 2, H, W) -> (N, 3, H, W)).
    method : {"exact", "table"}
        ``"exact"``: bisection, in at least float32 (float64 inputs stay float64), bit-for-bit
        what the engine writes. ``"table"``: the faster table fit, in float32 (see the module
        docstring for how far apart the two are).

    Returns
    -------
    Tensor
        ``torch.uint8`` on the inputs' device, the shape of ``ab`` with 3 channels along ``dim``.
    """
    if method == "exact":
        # the gamut test's linear RGB, kept: each pixel is converted once, not twice
        _, linear = fit_chroma_and_linear(L, ab, dim=dim)
        v = encode_srgb8(linear.clamp_(0.0, 1.0))
    elif method == "table":
        v = _table_encoded(L, ab, dim)
    else:
        raise ValueError(f"method must be 'exact' or 'table', got {method!r}")
    return v.to(torch.uint8).reshape(3, *L.shape).movedim(0, dim % ab.ndim).contiguous()


def _table_encoded(L: Tensor, ab: Tensor, dim: int) -> Tensor:
    """The table method's float32 (3, P) encoded sRGB (see :meth:`PlaneRenderer.encoded`)."""
    if not (ab.is_floating_point() and L.is_floating_point()):
        raise TypeError(f"L and ab must be floating-point tensors, got {L.dtype} and {ab.dtype}")
    dim = dim % ab.ndim if ab.ndim else dim
    if ab.ndim == 0 or ab.shape[dim] != 2 or L.shape != ab.shape[:dim] + ab.shape[dim + 1 :]:
        raise ValueError(
            f"expected ab with 2 channels along dim {dim} and L of its shape without that axis, "
            f"got L {tuple(L.shape)} and ab {tuple(ab.shape)}"
        )
    rows = ab.movedim(dim, -1).reshape(-1, 2).to(torch.float32)
    return PlaneRenderer(L, ab.device).encoded(rows)


class PlaneRenderer:
    """The table method of :func:`render_lab` for one plane's L*, rendered with any chroma.

    Keeps what depends on L* alone (32 bytes per pixel), so that re-rendering the same plane
    after a slider move costs one fused pass. Not thread-safe.

    Parameters
    ----------
    L : ndarray or Tensor
        float (H, W) (or any shape): L* in [0, 100].
    device : str or torch.device
        Where to compute ("cpu", "cuda", ...).
    """

    def __init__(self, L: np.ndarray | Tensor, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.shape = tuple(np.shape(L))
        if isinstance(L, Tensor):
            L_t = L.to(self.device, torch.float32)
        else:
            L_t = as_float32_tensor(L, self.device)
        self._fy = (L_t.reshape(-1) + 16.0) / 116.0
        self._y_terms = lightness_terms(f_inv(self._fy))
        # the same per pixel in rows, for gathering the out-of-gamut pixels in one go
        self._rows = torch.stack([self._fy, *self._y_terms], dim=1)
        self._gray: Tensor | None = None

    def _gray_encoded(self) -> Tensor:
        if self._gray is None:
            gray = linear_rgb(self._fy, self._fy.clone(), self._y_terms)
            self._gray = encode_srgb8(gray.clamp_(0.0, 1.0))
        return self._gray

    def render(self, ab: np.ndarray, adjust: ChromaAdjustment | None = None) -> np.ndarray:
        """sRGB uint8 ``shape + (3,)`` of this L* with ``ab`` (float ``shape + (2,)``).

        ``adjust`` (for example a :class:`~napari_chromagan.edit.blend.BlendParams`; its
        ``smooth_sigma`` is not used here) is applied on the way; None renders ``ab`` as it is.
        """
        if np.shape(ab) != (*self.shape, 2):
            raise ValueError(f"ab has shape {np.shape(ab)}; expected {(*self.shape, 2)}")
        t = as_float32_tensor(ab, self.device).reshape(-1, 2)
        return quantize(self.encoded(t, adjust), self.shape)

    def encoded(self, ab: Tensor, adjust: ChromaAdjustment | None = None) -> Tensor:
        """float32 (3, N) sRGB * 255 + 0.5 (truncate to get uint8) for ``ab`` float32 (N, 2)."""
        adjust = adjust or _NONE
        a, b = ab[:, 0], ab[:, 1]
        A, B, C, D = adjust.ab_matrix()
        ao, bo = adjust.a_offset, adjust.b_offset
        # fx = fy + a'/500 and fz = fy - b'/200, with a', b' = the adjusted a*, b* folded in
        fx = torch.add(self._fy, a, alpha=A / 500.0)
        fz = torch.add(self._fy, b, alpha=-D / 200.0)
        if B:
            fx.add_(b, alpha=B / 500.0)
        if C:
            fz.add_(a, alpha=-C / 200.0)
        if ao:
            fx.add_(ao / 500.0)
        if bo:
            fz.sub_(bo / 200.0)
        lin = linear_rgb(fx, fz, self._y_terms)
        out = false_indices(in_gamut(lin, GAMUT_TOL))
        if out.numel():
            lin.index_copy_(1, out, self._fit(ab, out, (A, B, C, D), ao, bo))
        v = encode_srgb8(lin.clamp_(0.0, 1.0))
        if adjust.gray > 0.0:
            v = torch.lerp(v, self._gray_encoded(), adjust.gray)  # exactly the gray image at 1
        return v

    def _fit(
        self,
        ab: Tensor,
        out: Tensor,
        matrix: tuple[float, float, float, float],
        ao: float,
        bo: float,
    ) -> Tensor:
        """Linear RGB (3, n) of the out-of-gamut pixels ``out``, their chroma shrunk at constant
        L* and hue onto the gamut boundary."""
        A, B, C, D = matrix
        a_out, b_out = ab.index_select(0, out).unbind(1)
        fy_out, *y_terms = self._rows.index_select(0, out).unbind(1)
        a_out, b_out = a_out * A + b_out * B + ao, a_out * C + b_out * D + bo
        L_out = fy_out * 116.0 - 16.0
        scale = table_chroma_scale(L_out, a_out, b_out, gamut_table(self.device))
        a_out.mul_(scale)
        b_out.mul_(scale)
        fitted = lab_linear(fy_out, y_terms, a_out, b_out)
        # Interpolating the table across a jump of the boundary (rare: at the yellow cusp) can
        # land outside: bisect those pixels as the exact method does. A small overshoot (within
        # FIT_SLACK in linear RGB) is left to the clip: it moves L* by < 0.1; so are L* outside
        # [0, 100], where even the gray is out of gamut.
        stray = false_indices(in_gamut(fitted, FIT_SLACK) | (L_out < 0.0) | (L_out > 100.0))
        if stray.numel():
            ab_fit = fit_chroma_to_gamut(
                L_out[stray], torch.stack([a_out[stray], b_out[stray]], dim=-1), dim=-1
            )
            fy_s = fy_out[stray]
            fitted.index_copy_(
                1,
                stray,
                lab_linear(fy_s, [term[stray] for term in y_terms], ab_fit[:, 0], ab_fit[:, 1]),
            )
        return fitted


def as_indexable(x: Any) -> Any:
    """``x`` itself when it has a shape and can be indexed (an ndarray, or the packed L* of a
    :class:`~napari_chromagan.napari.layer_result.LayerResult`, decoded on indexing), else an array."""
    return x if hasattr(x, "shape") and hasattr(x, "__getitem__") else np.asarray(x)


def render_srgb(
    L: np.ndarray,
    ab: np.ndarray,
    adjust: ChromaAdjustment | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """The table method on numpy arrays of any shape: uint8 (..., 3) for L (...), ab (..., 2).

    Planes (the last two axes) are rendered in strips of rows, so that the temporaries stay
    bounded whatever the size. ``adjust`` as in :meth:`PlaneRenderer.render`. A new array.
    ``L`` may also be any indexable with a shape that decodes on indexing (the packed L* of a
    :class:`~napari_chromagan.napari.layer_result.LayerResult`): only one strip is decoded at a time.
    """
    L, ab = as_indexable(L), as_indexable(ab)
    if ab.shape != (*L.shape, 2):
        raise ValueError(
            f"ab has shape {ab.shape}; expected {(*L.shape, 2)} for L of shape {L.shape}"
        )
    if L.ndim < 2:
        return PlaneRenderer(np.asarray(L[...]), device).render(np.asarray(ab[...]), adjust)
    rgb = np.empty((*L.shape, 3), np.uint8)
    rows = max(1, _STRIP_PIXELS // max(1, L.shape[-1]))
    for index in np.ndindex(*L.shape[:-2]):
        for r0 in range(0, L.shape[-2], rows):
            at = (*index, slice(r0, r0 + rows))
            rgb[at] = PlaneRenderer(np.asarray(L[at]), device).render(np.asarray(ab[at]), adjust)
    return rgb

"""Chroma adjustments on a colourisation result: strength, hue, balance, gray blend, stack smoothing.

Everything here starts again from the model's output (L*, a*, b* before gamut fitting, as stored
in a :class:`~napari_chromagan.layer_result.LayerResult`), so adjustments never accumulate and the
network is never re-run. No Qt, no napari: the Chroma blend widget is a thin front end to this.

The order of the per-pixel steps (see :func:`adjust_ab` and :func:`render_rgb`):

1. rotate the hue (a*, b*) by ``hue_degrees``;
2. scale the chroma by ``strength``;
3. add ``a_offset`` and ``b_offset`` (a colour balance: absolute shifts, neither rotated nor scaled);
4. fit the chroma into the sRGB gamut at constant L* and hue;
5. convert to sRGB and blend the gray image (L* only) over it with opacity ``gray``.

``smooth_sigma`` acts across planes (time points, z slices), before all of these.

Rendering speed
---------------
Moving a slider re-renders one plane, so :class:`PlaneRenderer` is written for speed: one fused
float32 Lab -> linear RGB pass in planar layout, with what depends on L* alone kept between
calls. A 1024 x 1024 plane takes about 35-50 ms of CPU on one thread here, so about 20-30 ms with
torch's default two threads on an idle 2-core machine.

The gamut fit does not bisect every out-of-gamut pixel (the engine's
:func:`~napari_chromagan.color.fit_chroma_to_gamut` takes 50-100 ms per such plane): it looks
the outermost in-gamut chroma up in a (L*, hue) table (``_fastlab._max_chroma_table``, 512 x 2048,
built once per process in about half a second) and scales the chroma to it, at constant L* and
hue. Pixels that the interpolation leaves clearly outside (rare) are bisected as the engine
does. Compared with the engine's rendering: L* is kept as exactly (to the 8-bit rounding, < 0.25);
in-gamut pixels agree to one 8-bit level; fitted pixels differ by less than 1 CIE76 Delta E on
99.9 % of pixels of saturated test images. The exception is a sliver at the yellow cusp
(L* > 92, hues 98-107 degrees), where a ray of constant hue leaves the gamut and comes back:
there the table keeps the outer, more saturated boundary, while the engine's bisection may stop
at the inner one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ._fastlab import (
    _FIT_SLACK,
    _as_tensor,
    _combine,
    _encode,
    _finv,
    _fit_scale,
    _gamut_table,
    _inside,
    _quantize,
    _where_false,
    _y_terms,
    prepare_gamut_table,
)
from .color import fit_chroma_to_gamut
from .progress import CancelEvent, Progress, check_cancel, run_events

__all__ = [
    "BlendParams",
    "PlaneRenderer",
    "adjust_ab",
    "apply_to_stack",
    "iter_apply_to_stack",
    "prepare_gamut_table",
    "render_plane",
    "render_rgb",
    "smooth_ab",
    "smooth_plane_ab",
]

# The allowed ranges, inclusive; the widgets take their slider limits from here.
STRENGTH_RANGE = (0.0, 2.0)
GRAY_RANGE = (0.0, 1.0)
OFFSET_RANGE = (-128.0, 128.0)
HUE_RANGE = (-180.0, 180.0)
SIGMA_RANGE = (0.0, 100.0)

_STRIP_PIXELS = 1 << 21  # rows per strip in whole-stack work: bounds the temporaries (~40 B/pixel)


class _LayerResultLike(Protocol):
    L: np.ndarray
    ab: np.ndarray


@dataclass(frozen=True)
class BlendParams:
    """How to turn the model's chroma into the displayed colours.

    Attributes
    ----------
    strength : float
        Chroma scale in [0, 2]: 0 = gray, 1 = the model's output, 2 = twice as saturated.
    gray : float
        Opacity in [0, 1] of the gray image (L* only) blended over the colour result in sRGB.
    a_offset, b_offset : float
        Added to a* (green -, red +) and b* (blue -, yellow +), in [-128, 128].
    hue_degrees : float
        Rotation of the hue in the a*b* plane, in [-180, 180] degrees (counter-clockwise:
        +90 turns red (+a*) into yellow (+b*)).
    smooth_sigma : float
        Gaussian sigma, in planes, of a smoothing of a*, b* along a stack axis, in [0, 100];
        0 = none. Against colour flicker in time-lapses and z-stacks.
    smooth_axis : int
        Which stack axis to smooth along (0 = the first leading axis of the data).
    """

    strength: float = 1.0
    gray: float = 0.0
    a_offset: float = 0.0
    b_offset: float = 0.0
    hue_degrees: float = 0.0
    smooth_sigma: float = 0.0
    smooth_axis: int = 0

    def __post_init__(self) -> None:
        ranges = {
            "strength": STRENGTH_RANGE,
            "gray": GRAY_RANGE,
            "a_offset": OFFSET_RANGE,
            "b_offset": OFFSET_RANGE,
            "hue_degrees": HUE_RANGE,
            "smooth_sigma": SIGMA_RANGE,
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
            if not lo <= float(value) <= hi:  # also rejects NaN
                raise ValueError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")
            object.__setattr__(self, name, float(value))
        axis = self.smooth_axis
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis < 0:
            raise ValueError(f"smooth_axis must be an integer >= 0 (a stack axis), got {axis!r}")
        object.__setattr__(self, "smooth_axis", int(axis))

    @property
    def is_identity(self) -> bool:
        """Whether these parameters leave the model's output as it is."""
        return self.adjusts_nothing_per_pixel and self.smooth_sigma == 0.0

    @property
    def adjusts_nothing_per_pixel(self) -> bool:
        """Whether the per-pixel steps (all but smoothing) are the identity."""
        return self.ab_is_identity and self.gray == 0.0

    @property
    def ab_is_identity(self) -> bool:
        """Whether :func:`adjust_ab` returns a*, b* unchanged."""
        return (
            self.strength == 1.0
            and self.a_offset == 0.0
            and self.b_offset == 0.0
            and self.hue_degrees % 360.0 == 0.0
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins, for layer metadata and settings files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> BlendParams:
        """Parameters from :meth:`to_dict` output; ``{}`` or None give the identity.

        Unknown keys (from a newer version) are ignored; bad values raise ValueError.
        """
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(values or {}).items() if k in names})

    def _ab_matrix(self) -> tuple[float, float, float, float]:
        """(A, B, C, D) with a' = A a + B b + a_offset, b' = C a + D b + b_offset."""
        theta = math.radians(self.hue_degrees)
        # exact zeros at multiples of 90 degrees, so that +-90 is an exact swap of a* and b*
        cos, sin = (0.0 if abs(v) < 1e-12 else v for v in (math.cos(theta), math.sin(theta)))
        c, s = cos * self.strength, sin * self.strength
        return c, -s, s, c


# ----------------------------------------------------------------------------------- ab maths


def adjust_ab(ab: np.ndarray, params: BlendParams) -> np.ndarray:
    """Rotate the hue, scale the chroma, then add the offsets (in that order).

    Rotation and scaling commute (both act about the gray axis); the offsets come last so that
    "a* + 10" shifts every pixel by the same amount whatever the strength and hue settings.

    Parameters
    ----------
    ab : ndarray
        float (..., 2): a*, b*.
    params : BlendParams
        Only strength, hue_degrees, a_offset and b_offset are used.

    Returns
    -------
    ndarray
        float32 (..., 2), a new array (``ab`` itself when the parameters change nothing).
    """
    ab = np.asarray(ab)
    if ab.ndim == 0 or ab.shape[-1] != 2:
        raise ValueError(f"ab needs a last axis of length 2, got shape {ab.shape}")
    if params.ab_is_identity:
        return ab
    A, B, C, D = params._ab_matrix()
    a, b = ab[..., 0].astype(np.float32), ab[..., 1].astype(np.float32)
    out = np.empty(ab.shape, np.float32)
    out[..., 0] = A * a + B * b + params.a_offset
    out[..., 1] = C * a + D * b + params.b_offset
    return out


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

    return gaussian_filter1d(ab, sigma, axis=axis, mode="nearest", output=np.float32)


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


# ----------------------------------------------------------------------------------- rendering

class PlaneRenderer:
    """Renders one plane's L* with any chroma and :class:`BlendParams`, fast.

    Keeps what depends on L* alone (32 bytes per pixel), so that re-rendering the same plane
    after a slider move costs one fused pass. Not thread-safe.

    Parameters
    ----------
    L : ndarray
        float (H, W) (or any shape): L* in [0, 100].
    device : str or torch.device
        Where to compute ("cpu", "cuda", ...).
    """

    def __init__(self, L: np.ndarray, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.shape = tuple(np.shape(L))
        self._fy = (_as_tensor(L, self.device).reshape(-1) + 16.0) / 116.0
        self._y_terms = _y_terms(_finv(self._fy))
        # the same per pixel in rows, for gathering the out-of-gamut pixels in one go
        self._rows = torch.stack([self._fy, *self._y_terms], dim=1)
        self._gray: Tensor | None = None

    def _gray_encoded(self) -> Tensor:
        if self._gray is None:
            self._gray = _encode(
                _combine(self._fy, self._fy.clone(), self._y_terms).clamp_(0.0, 1.0)
            )
        return self._gray

    def render(self, ab: np.ndarray, params: BlendParams | None = None) -> np.ndarray:
        """sRGB uint8 ``shape + (3,)`` of this L* with ``ab`` (float ``shape + (2,)``).

        ``params.smooth_sigma`` is not used here (smoothing needs the stack; see
        :func:`smooth_plane_ab`).
        """
        params = params or BlendParams()
        if np.shape(ab) != (*self.shape, 2):
            raise ValueError(f"ab has shape {np.shape(ab)}; expected {(*self.shape, 2)}")
        t = _as_tensor(ab, self.device).reshape(-1, 2)
        a, b = t[:, 0], t[:, 1]
        A, B, C, D = params._ab_matrix()
        ao, bo = params.a_offset, params.b_offset
        # fx = fy + a'/500 and fz = fy - b'/200, with a', b' = adjust_ab(a, b) folded in
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
        lin = _combine(fx, fz, self._y_terms)
        out = _where_false(_inside(lin))
        if out.numel():
            # out of gamut: shrink a', b' at constant L* and hue onto the gamut boundary
            a_out, b_out = t.index_select(0, out).unbind(1)
            fy_out, *y_terms = self._rows.index_select(0, out).unbind(1)
            a_out, b_out = a_out * A + b_out * B + ao, a_out * C + b_out * D + bo
            L_out = fy_out * 116.0 - 16.0
            scale = _fit_scale(L_out, a_out, b_out, _gamut_table(self.device))
            a_out.mul_(scale)
            b_out.mul_(scale)
            fitted = _combine(
                torch.add(fy_out, a_out, alpha=1.0 / 500.0),
                torch.add(fy_out, b_out, alpha=-1.0 / 200.0),
                y_terms,
            )
            # Interpolating the table across a jump of the boundary (rare: at the yellow cusp)
            # can land outside: bisect those pixels as the engine does. A small overshoot
            # (within _FIT_SLACK in linear RGB) is left to the clip below: it moves L* by < 0.1;
            # so are L* outside [0, 100], where even the gray is out of gamut.
            stray = _where_false(_inside(fitted, _FIT_SLACK) | (L_out < 0.0) | (L_out > 100.0))
            if stray.numel():
                ab_fit = fit_chroma_to_gamut(
                    L_out[stray], torch.stack([a_out[stray], b_out[stray]], dim=-1), dim=-1
                )
                fy_s = fy_out[stray]
                fitted.index_copy_(
                    1,
                    stray,
                    _combine(
                        torch.add(fy_s, ab_fit[:, 0], alpha=1.0 / 500.0),
                        torch.add(fy_s, ab_fit[:, 1], alpha=-1.0 / 200.0),
                        [term[stray] for term in y_terms],
                    ),
                )
            lin.index_copy_(1, out, fitted)
        v = _encode(lin.clamp_(0.0, 1.0))
        if params.gray > 0.0:
            v = torch.lerp(v, self._gray_encoded(), params.gray)  # exactly the gray image at 1
        return _quantize(v, self.shape)


def render_rgb(
    L: np.ndarray,
    ab: np.ndarray,
    params: BlendParams | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Adjusted chroma -> L*-preserving gamut fit -> sRGB uint8 -> gray blend.

    The gray blend is an opacity blend, in gamma-encoded sRGB, of the gray image
    (L*, 0, 0) over the colour result: ``(1 - gray) * colour + gray * gray_image``, which is
    what napari shows with a gray layer of that opacity above the colour layer. It is done in
    sRGB rather than Lab on purpose: mixing with (L*, 0, 0) in Lab would be exactly a chroma
    scale by ``1 - gray`` (L* is the same in both), i.e. the strength slider again. In sRGB the
    two differ: the blend moves every channel straight towards the gray value, so the L* of a
    saturated colour shifts a little (sRGB is not linear in luminance) and its hue can drift,
    as with any layer opacity; ``strength`` keeps L* and hue exactly.

    Parameters
    ----------
    L : ndarray
        float (...): L* in [0, 100].
    ab : ndarray
        float (..., 2): the model's a*, b* (before gamut fitting).
    params : BlendParams, optional
        Default: the identity. ``smooth_sigma`` is not used (see :func:`apply_to_stack`).
    device : str or torch.device
        Where to compute.

    Returns
    -------
    ndarray
        uint8 (..., 3), a new array.
    """
    L = np.asarray(L)
    ab = np.asarray(ab)
    if ab.shape != (*L.shape, 2):
        raise ValueError(
            f"ab has shape {ab.shape}; expected {(*L.shape, 2)} for L of shape {L.shape}"
        )
    if L.ndim < 2:
        return PlaneRenderer(L, device).render(ab, params)
    rgb = np.empty((*L.shape, 3), np.uint8)
    rows = max(1, _STRIP_PIXELS // max(1, L.shape[-1]))
    for index in np.ndindex(*L.shape[:-2]):
        for r0 in range(0, L.shape[-2], rows):
            at = (*index, slice(r0, r0 + rows))
            rgb[at] = PlaneRenderer(L[at], device).render(ab[at], params)
    return rgb


def render_plane(
    result: _LayerResultLike,
    params: BlendParams | None = None,
    index: tuple[int, ...] = (),
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """The plane ``index`` of a result, rendered with ``params`` (smoothing included).

    Parameters
    ----------
    result : LayerResult or anything with ``L`` (*stack, H, W) and ``ab`` (*stack, H, W, 2)
    params : BlendParams, optional
    index : tuple of int
        One index per stack axis; () for a 2D result.

    Returns
    -------
    ndarray
        uint8 (H, W, 3).
    """
    params = params or BlendParams()
    index = tuple(int(i) for i in index)
    ab = smooth_plane_ab(result.ab, index, params.smooth_sigma, params.smooth_axis)
    return PlaneRenderer(result.L[index], device).render(ab, params)


def iter_apply_to_stack(
    L: np.ndarray,
    ab: np.ndarray,
    params: BlendParams,
    out: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    cancel: CancelEvent | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Render a whole layer plane by plane, as a generator of progress events (in planes).

    The generator form of :func:`apply_to_stack`, for ``thread_worker`` (each yield is a
    chance to quit): yields ``Progress(0, total)``, then one after each plane, and returns
    ``out`` (``StopIteration.value``). Smoothing runs first, across the stack; then each plane
    is rendered with :func:`render_rgb`. ``out`` (uint8 (*stack, H, W, 3)) is filled in place;
    it is created when None. When ``cancel`` is set, stops before the next plane and raises
    :class:`~napari_chromagan.errors.Cancelled`.
    """
    L, ab = np.asarray(L), np.asarray(ab)
    if ab.shape != (*L.shape, 2) or L.ndim < 2:
        raise ValueError(
            f"expected L (*stack, H, W) and ab (*stack, H, W, 2), got {L.shape} and {ab.shape}"
        )
    if out is None:
        out = np.empty((*L.shape, 3), np.uint8)
    elif out.shape != (*L.shape, 3) or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {(*L.shape, 3)}, got {out.dtype} {out.shape}")
    total = math.prod(L.shape[:-2])
    yield Progress(0, total)
    if params.smooth_sigma > 0 and L.ndim > 2:
        ab = smooth_ab(ab, params.smooth_sigma, params.smooth_axis)
    for done, index in enumerate(np.ndindex(*L.shape[:-2])):
        check_cancel(cancel, "chroma blend", done, total)
        out[index] = render_rgb(L[index], ab[index], params, device)
        yield Progress(done + 1, total)
    return out


def apply_to_stack(
    L: np.ndarray,
    ab: np.ndarray,
    params: BlendParams,
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelEvent | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Render every plane of a result with ``params``: smoothing across the stack, then per plane.

    Parameters
    ----------
    L : ndarray
        float (*stack, H, W): L* in [0, 100].
    ab : ndarray
        float (*stack, H, W, 2): the model's a*, b*.
    params : BlendParams
    progress : callable, optional
        ``progress(done, total)`` in planes, called once before the first plane and after each.
    cancel : threading.Event, optional
        When set, stops before the next plane and raises :class:`~napari_chromagan.errors.Cancelled`.

    Returns
    -------
    ndarray
        uint8 (*stack, H, W, 3), a new array.
    """
    return run_events(iter_apply_to_stack(L, ab, params, device=device, cancel=cancel), progress)

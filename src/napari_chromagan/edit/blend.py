"""Chroma adjustments on a colourisation result: strength, hue, balance, gray blend, stack smoothing.

Everything here starts again from the model's output (L*, a*, b* before gamut fitting, as stored
in a :class:`~napari_chromagan.napari.layer_result.LayerResult`), so adjustments never accumulate and the
network is never re-run. No Qt, no napari: the Chroma blend widget is a thin front end to this.

The order of the per-pixel steps (see :func:`adjust_ab` and :func:`render_rgb`):

1. rotate the hue (a*, b*) by ``hue_degrees``;
2. scale the chroma by ``strength``;
3. add ``a_offset`` and ``b_offset`` (a colour balance: absolute shifts, neither rotated nor scaled);
4. fit the chroma into the sRGB gamut at constant L* and hue;
5. convert to sRGB and blend the gray image (L* only) over it with opacity ``gray``.

``smooth_sigma`` acts across planes (time points, z slices), before all of these; the smoothing
itself is :mod:`napari_chromagan.edit.stack_smoothing` (``smooth_ab`` and ``smooth_plane_ab``,
re-exported here).

Rendering (steps 4 and 5) is :mod:`napari_chromagan.color.render`'s table method: the gamut policy of
:mod:`napari_chromagan.color.gamut`, a fast fused pass for live previews, and how far it is from the
engine's exact rendering, are described and measured there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch

from napari_chromagan.color.render import (
    PlaneRenderer,
    as_indexable,
    prepare_gamut_table,
    render_srgb,
)
from napari_chromagan.edit.stack_smoothing import smooth_ab, smooth_plane_ab
from napari_chromagan.progress import CancelEvent, Progress, check_cancel, run_events

__all__ = [  # PlaneRenderer and prepare_gamut_table live in .render (here for older scripts)
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


class _LayerResultLike(Protocol):
    L: Any
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

    def ab_matrix(self) -> tuple[float, float, float, float]:
        """(A, B, C, D) with a' = A a + B b + a_offset, b' = C a + D b + b_offset (hue, then strength)."""
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
    A, B, C, D = params.ab_matrix()
    a, b = ab[..., 0].astype(np.float32), ab[..., 1].astype(np.float32)
    out = np.empty(ab.shape, np.float32)
    out[..., 0] = A * a + B * b + params.a_offset
    out[..., 1] = C * a + D * b + params.b_offset
    return out


# ----------------------------------------------------------------------------------- rendering


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
        float (...): L* in [0, 100] (or a stored result's packed L*, decoded strip by strip).
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
    return render_srgb(L, ab, params, device)


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
    L, ab = as_indexable(L), as_indexable(ab)
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
        float (*stack, H, W): L* in [0, 100] (or a stored result's packed L*).
    ab : ndarray
        float (*stack, H, W, 2): the model's a*, b* (float16 as stored, or float32).
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

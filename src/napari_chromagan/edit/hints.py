"""Colour hints: "this thing is red", spread within the object, on top of the network's colours.

A hint is a colour at a place: a point (with a radius), a stroke, or a labelled region. It changes
the chroma (a*, b*) of a :class:`~napari_chromagan.engine.colorize.ColorizeResult`; L* is never touched,
and without hints the result is the network's, exactly.

The method is colourisation by optimisation (Levin, Lischinski and Weiss, SIGGRAPH 2004), with
the network's a*b* as the data term away from the hints: the chroma may change freely across
lightness edges and varies smoothly where the lightness is smooth, one sparse linear system per
plane, solved at a working resolution and brought to full resolution guided by the
full-resolution L* (see :mod:`napari_chromagan.edit.hint_solver` for the equations and the measured
choices). ``reach`` says how far a hint spreads, ``edge`` how large a lightness step stops it,
``strength`` how far it moves its pixels from the network's colour; in Labels mode each label is
one object, filled with its colour, fading out within ``feather`` pixels beyond its border.

The hints themselves are :mod:`~napari_chromagan.edit.hint_data` (with their parameters in
:mod:`~napari_chromagan.edit.hint_params`, and a CSV reader in :mod:`~napari_chromagan.edit.hint_csv`);
this module applies them to a plane or a whole result, and re-exports those names.

No Qt, no napari: the Colour hints widget is a thin front end to this module.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace

import numpy as np

from napari_chromagan.color.render import render_srgb
from napari_chromagan.edit.hint_csv import read_hints_csv
from napari_chromagan.edit.hint_data import ColorHints, colors_to_ab, describe_hints
from napari_chromagan.edit.hint_params import (
    EDGE_RANGE,
    FEATHER_RANGE,
    REACH_RANGE,
    STRENGTH_RANGE,
    WORKING_PIXELS_RANGE,
    HintParams,
)
from napari_chromagan.edit.hint_solver import plane_change
from napari_chromagan.engine.result import ColorizeResult
from napari_chromagan.errors import HintError
from napari_chromagan.progress import CancelEvent, Progress, check_cancel, run_events

__all__ = [
    "EDGE_RANGE",
    "FEATHER_RANGE",
    "REACH_RANGE",
    "STRENGTH_RANGE",
    "WORKING_PIXELS_RANGE",
    "ColorHints",
    "HintParams",
    "apply_color_hints",
    "colors_to_ab",
    "describe_hints",
    "hint_plane",
    "iter_color_hints",
    "read_hints_csv",
]

_STRIP_PIXELS = 1 << 18  # full-resolution pixels per strip (bounds the temporaries)


# ----------------------------------------------------------------------------------- one plane


def hint_plane(
    L: np.ndarray,
    ab: np.ndarray,
    hints: ColorHints,
    params: HintParams | None = None,
    index: tuple[int, ...] = (),
    missing: np.ndarray | None = None,
) -> np.ndarray:
    """One plane's a*, b* with the hints of plane ``index`` applied (the live preview's unit).

    Parameters
    ----------
    L : ndarray
        float (H, W): L* in [0, 100].
    ab : ndarray
        float (H, W, 2): the network's a*, b*.
    hints : ColorHints
    params : HintParams, optional
    index : tuple of int
        The plane's index on the result's stack axes (() for a 2D result).
    missing : ndarray, optional
        bool (H, W): pixels without lightness; they keep their chroma (none).

    Returns
    -------
    ndarray
        float32 (H, W, 2), a new array; ``ab`` itself when no hint falls on this plane.
    """
    params = params or HintParams()
    L, ab = np.asarray(L), np.asarray(ab)
    if L.ndim != 2 or ab.shape != (*L.shape, 2):
        raise HintError(f"expected L (H, W) and ab (H, W, 2), got {L.shape} and {ab.shape}")
    change = plane_change(L, ab, hints, tuple(index), params)
    if change is None:
        return ab
    out = np.empty(ab.shape, np.float32)
    rows = max(1, _STRIP_PIXELS // L.shape[1])
    for r0 in range(0, L.shape[0], rows):
        r1 = min(L.shape[0], r0 + rows)
        out[r0:r1] = ab[r0:r1] + change.rows(r0, r1, L, missing)
    return out


# ----------------------------------------------------------------------------------- whole result


def iter_color_hints(
    L: np.ndarray,
    ab: np.ndarray,
    hints: ColorHints,
    params: HintParams,
    out_ab: np.ndarray,
    out_rgb: np.ndarray | None = None,
    missing: np.ndarray | None = None,
    cancel: CancelEvent | None = None,
) -> Generator[Progress, None, None]:
    """Apply hints plane by plane, as a generator of progress events (in hinted planes).

    The generator form of :func:`apply_color_hints`, for ``thread_worker`` (each yield is a
    chance to quit): yields ``Progress(0, total)``, then one after each plane. Only the planes
    that some hint falls on are solved and written. When ``cancel`` is set, stops before the
    next plane and raises :class:`~napari_chromagan.errors.Cancelled`.

    Parameters
    ----------
    L : ndarray
        float (*stack, H, W): L* in [0, 100] (or a stored result's packed L*, indexed per plane).
    ab : ndarray
        float (*stack, H, W, 2): the network's a*, b*.
    hints : ColorHints
    params : HintParams
    out_ab : ndarray
        float32 or float16 (*stack, H, W, 2), holding ``ab`` already: hinted planes are
        overwritten (rounded to its dtype; the RGB is rendered from the unrounded values).
    out_rgb : ndarray, optional
        uint8 (*stack, H, W, 3), holding the result's rendering already: pixels whose chroma
        changes are rendered again with :func:`~napari_chromagan.color.render.render_srgb` (the
        L*-preserving gamut fit), the others keep their values bit for bit.
    missing : ndarray, optional
        bool (*stack, H, W): pixels without lightness (they keep no chroma).
    cancel : threading.Event, optional
    """
    stack = L.shape[:-2]
    hints.check(stack, L.shape[-2:])
    H, W = L.shape[-2:]
    rows = max(1, _STRIP_PIXELS // W)
    planes = hints.planes(stack)
    yield Progress(0, len(planes))
    for done, index in enumerate(planes):
        check_cancel(cancel, "colour hints", done, len(planes))
        L_plane, ab_plane = L[index], ab[index]  # once: a stored result's L* decodes on indexing
        change = plane_change(L_plane, ab_plane, hints, index, params)
        if change is not None:
            plane_missing = None if missing is None else missing[index]
            for r0 in range(0, H, rows):
                r1 = min(H, r0 + rows)
                q = change.rows(r0, r1, L_plane, plane_missing)
                if not q.any():
                    continue  # out_ab and out_rgb hold the input's values already
                new = ab_plane[r0:r1] + q
                out_ab[index][r0:r1] = new
                if out_rgb is not None:
                    strip = render_srgb(L_plane[r0:r1], new)
                    moved = q.any(axis=-1)
                    out_rgb[index][r0:r1][moved] = strip[moved]
        yield Progress(done + 1, len(planes))


def apply_color_hints(
    result: ColorizeResult,
    hints: ColorHints,
    *,
    strength: float = 1.0,
    reach: float = 0.25,
    edge: float = 3.0,
    feather: float = 4.0,
    working_pixels: int = 1 << 16,
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelEvent | None = None,
) -> ColorizeResult:
    """A new result whose a*b* honours colour hints; L* is the input's, untouched.

    Parameters
    ----------
    result : ColorizeResult
        What :meth:`Colorizer.colorize` returned (L* (*stack, H, W), a*b* (*stack, H, W, 2)).
    hints : ColorHints
        Points, strokes or labels with their target colours (see :class:`ColorHints`).
    strength, reach, edge, feather, working_pixels
        See :class:`HintParams`.
    progress : callable, optional
        ``progress(done, total)`` in hinted planes, once before the first and after each.
    cancel : threading.Event, optional
        When set, stops before the next plane and raises :class:`~napari_chromagan.errors.Cancelled`.

    Returns
    -------
    ColorizeResult
        ``ab`` and ``rgb`` are new arrays (the input's where no hint reaches, bit for bit);
        ``L``, ``class_probs`` and ``missing`` are the input's own arrays (not copied).
        Without hints, a result equal to the input (sharing its arrays).

    Raises
    ------
    HintError
        For parameters out of range or hints that do not fit the result (the message says how).
    """
    params = HintParams(
        strength=strength, reach=reach, edge=edge, feather=feather, working_pixels=working_pixels
    )
    L, ab = np.asarray(result.L), np.asarray(result.ab)
    if L.ndim < 2 or ab.shape != (*L.shape, 2):
        raise HintError(
            f"the result's L {L.shape} and ab {ab.shape} do not match: expected (*stack, H, W) and (..., 2)"
        )
    hints.check(L.shape[:-2], L.shape[-2:])
    planes = hints.planes(L.shape[:-2])
    if not planes or params.strength == 0.0:
        return replace(result)
    out_ab = np.array(ab, np.float32, copy=True)
    out_rgb = np.array(result.rgb, copy=True)
    run_events(
        iter_color_hints(L, ab, hints, params, out_ab, out_rgb, result.missing, cancel), progress
    )
    return replace(result, ab=out_ab, rgb=out_rgb)

"""Colour hints: "this thing is red", spread within the object, on top of the network's colours.

A hint is a colour at a place: a point (with a radius), a stroke, or a labelled region. It changes
the chroma (a*, b*) of a :class:`~napari_chromagan.colorize.ColorizeResult`; L* is never touched,
and without hints the result is the network's, exactly.

The method is colourisation by optimisation (Levin, Lischinski and Weiss, SIGGRAPH 2004), with
the network's a*b* as the data term away from the hints: the chroma may change freely across
lightness edges and varies smoothly where the lightness is smooth, one sparse linear system per
plane, solved at a working resolution and brought to full resolution guided by the
full-resolution L* (see :mod:`napari_chromagan.hint_solver` for the equations and the measured
choices). ``reach`` says how far a hint spreads, ``edge`` how large a lightness step stops it,
``strength`` how far it moves its pixels from the network's colour; in Labels mode each label is
one object, filled with its colour, fading out within ``feather`` pixels beyond its border.

No Qt, no napari: the Colour hints widget is a thin front end to this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .color import rgb_to_lab
from .colorize import ColorizeResult
from .errors import HintError
from .hint_solver import plane_change
from .progress import CancelEvent, Progress, check_cancel, run_events
from .render import render_srgb

__all__ = [
    "ColorHints",
    "HintParams",
    "apply_color_hints",
    "colors_to_ab",
    "describe_hints",
    "hint_plane",
    "iter_color_hints",
    "read_hints_csv",
]

# The allowed ranges, inclusive; the widget takes its slider limits from here.
STRENGTH_RANGE = (0.0, 1.0)
REACH_RANGE = (0.001, 10.0)
EDGE_RANGE = (0.1, 100.0)
FEATHER_RANGE = (0.0, 1000.0)
WORKING_PIXELS_RANGE = (1 << 10, 1 << 24)

_STRIP_PIXELS = 1 << 18  # full-resolution pixels per strip (bounds the temporaries)


# ----------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class HintParams:
    """How hints act.

    Attributes
    ----------
    strength : float
        In [0, 1]: how far a hint moves its pixels from the network's chroma towards its own
        (1 = exactly the hint's a*b*, 0.5 = half way, 0 = no effect).
    reach : float
        In [0.001, 10]: how far a hint spreads, as a fraction of the image's longer side (the
        decay length of its influence where the lightness is uniform). Points and strokes only.
    edge : float
        In [0.1, 100], L* units: the lightness step between neighbouring pixels at which spreading
        is weakened to exp(-1/2); a step of 3 x ``edge`` lets through about 1 %. Smaller = stops
        at fainter edges.
    feather : float
        In [0, 1000], full-resolution pixels: Labels mode only, how far a label's colour fades out
        beyond its border.
    working_pixels : int
        In [1024, 16777216]: the number of pixels the system is solved on (images up to this
        size are solved at full resolution).
    """

    strength: float = 1.0
    reach: float = 0.25
    edge: float = 3.0
    feather: float = 4.0
    working_pixels: int = 1 << 16

    def __post_init__(self) -> None:
        ranges = {
            "strength": STRENGTH_RANGE,
            "reach": REACH_RANGE,
            "edge": EDGE_RANGE,
            "feather": FEATHER_RANGE,
            "working_pixels": WORKING_PIXELS_RANGE,
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise HintError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
            if not lo <= float(value) <= hi:  # also rejects NaN
                raise HintError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")
            object.__setattr__(self, name, int(value) if name == "working_pixels" else float(value))

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins, for layer metadata and settings files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> HintParams:
        """Parameters from :meth:`to_dict` output (unknown keys ignored; ``{}`` = the defaults)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(values or {}).items() if k in names})


# ----------------------------------------------------------------------------------- hints


def colors_to_ab(colors: Any, space: str = "srgb") -> np.ndarray:
    """Target colours -> their a*, b* (float32 (n, 2)).

    Parameters
    ----------
    colors : array-like
        (n, 3) or (n, 4) (an alpha column is ignored). ``space="srgb"``: sRGB, uint8 in [0, 255]
        or float in [0, 1] (napari's face, edge and label colours). ``space="lab"``: (n, 3)
        L*, a*, b* or (n, 2) a*, b*.
    space : {"srgb", "lab"}

    Only a*, b* are kept: the image's L* stays, so a hint much lighter or darker than its object
    keeps its hue and chroma at the object's lightness (less chroma where that leaves the sRGB
    gamut: the rendering fits it at constant L* and hue).
    """
    arr = np.asarray(colors)
    if arr.ndim == 1 and arr.size in (2, 3, 4):
        arr = arr[None]
    if arr.ndim != 2 or arr.dtype.kind not in "uif":
        raise HintError(
            f"colours must be an (n, 3) or (n, 4) numeric array, got {arr.dtype} {arr.shape}"
        )
    if space == "lab":
        if arr.shape[1] not in (2, 3):
            raise HintError(
                f"Lab colours need 2 (a*, b*) or 3 (L*, a*, b*) columns, got {arr.shape[1]}"
            )
        ab = arr[:, -2:].astype(np.float32)
    elif space == "srgb":
        if arr.shape[1] not in (3, 4):
            raise HintError(f"sRGB colours need 3 (RGB) or 4 (RGBA) columns, got {arr.shape[1]}")
        rgb = arr[:, :3].astype(np.float64)
        if arr.dtype.kind in "ui":
            rgb = rgb / 255.0
        if rgb.size and (rgb.min() < -1e-6 or rgb.max() > 1 + 1e-6):
            raise HintError(
                "float sRGB colours must lie in [0, 1] (integer ones in [0, 255]); "
                f"got values in [{rgb.min():g}, {rgb.max():g}]"
            )
        if not len(rgb):
            return np.zeros((0, 2), np.float32)
        lab = rgb_to_lab(torch.from_numpy(np.clip(rgb, 0.0, 1.0)), dim=-1).numpy()
        ab = lab[:, 1:].astype(np.float32)
    else:
        raise HintError(f"space must be 'srgb' or 'lab', got {space!r}")
    if not np.isfinite(ab).all():
        raise HintError("hint colours must be finite numbers")
    return ab


@dataclass(frozen=True, eq=False)
class ColorHints:
    """Target colours at places: points, a stroke mask, or a Labels mask.

    Make them with :meth:`from_points`, :meth:`from_strokes` or :meth:`from_labels`; combine
    points and strokes with :meth:`combine`.

    Attributes
    ----------
    coords : ndarray
        float64 (n, 2) or (n, 2 + k): point positions in pixels of the full-resolution plane, as
        (row, col), with the stack index first for a result with k stack axes (n-D napari
        Points). (n, 2) points apply to every plane of a stack.
    ab : ndarray
        float32 (n, 2): each point's target a*, b*.
    radius : ndarray
        float64 (n,) > 0: each point's radius in full-resolution pixels (at least one working
        pixel is always covered).
    mask : ndarray or None
        integer (H, W) (every plane) or (*stack, H, W): labels of hint pixels; 0 and labels not
        in ``mask_labels`` are not hints.
    mask_labels : ndarray
        int64 (m,): the labels that carry a colour.
    mask_ab : ndarray
        float32 (m, 2): their target a*, b*.
    fill : bool
        Labels mode: each label is one object; its colour fills it and fades out within
        ``HintParams.feather`` pixels beyond its border. Otherwise the mask holds strokes, which
        spread as points do (``HintParams.reach``).
    """

    coords: np.ndarray
    ab: np.ndarray
    radius: np.ndarray
    mask: np.ndarray | None = None
    mask_labels: np.ndarray | None = None
    mask_ab: np.ndarray | None = None
    fill: bool = False

    def __post_init__(self) -> None:
        coords = np.asarray(self.coords, np.float64)
        if coords.size == 0:
            coords = coords.reshape(0, max(2, coords.shape[-1] if coords.ndim == 2 else 2))
        if coords.ndim != 2 or coords.shape[1] < 2:
            raise HintError(
                f"point coordinates must be (n, 2) or (n, 2 + stack axes), got shape {coords.shape}"
            )
        n = len(coords)
        ab = np.asarray(self.ab, np.float32).reshape(-1, 2) if n else np.zeros((0, 2), np.float32)
        radius = np.broadcast_to(np.asarray(self.radius, np.float64), (n,)).copy()
        if len(ab) != n:
            raise HintError(f"{n} points but {len(ab)} colours: give one colour per point")
        if not (np.isfinite(coords).all() and np.isfinite(ab).all()):
            raise HintError("point coordinates and colours must be finite numbers")
        if n and not (np.isfinite(radius).all() and radius.min() > 0):
            raise HintError(f"point radii must be > 0 pixels, got {radius.min():g}")
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "ab", ab)
        object.__setattr__(self, "radius", radius)
        labels = (
            np.zeros(0, np.int64)
            if self.mask_labels is None
            else np.asarray(self.mask_labels, np.int64).reshape(-1)
        )
        label_ab = (
            np.zeros((0, 2), np.float32)
            if self.mask_ab is None
            else np.asarray(self.mask_ab, np.float32).reshape(-1, 2)
        )
        if len(labels) != len(label_ab):
            raise HintError(
                f"{len(labels)} labels but {len(label_ab)} label colours: give one colour per label"
            )
        if len(np.unique(labels)) != len(labels):
            raise HintError("each label may have one colour only")
        mask = self.mask
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype.kind not in "uib" or mask.ndim < 2:
                raise HintError(
                    f"a hint mask must be an integer (or bool) array of at least 2 axes, got {mask.dtype} {mask.shape}"
                )
        order = np.argsort(labels)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "mask_labels", labels[order])
        object.__setattr__(self, "mask_ab", label_ab[order])
        object.__setattr__(self, "fill", bool(self.fill))
        if self.fill and n:
            raise HintError(
                "Labels mode (fill=True) takes a mask only; give points as separate hints"
            )

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_points(
        cls, coords: Any, colors: Any, *, radius: Any = 5.0, space: str = "srgb"
    ) -> ColorHints:
        """Point hints.

        Parameters
        ----------
        coords : array-like
            (n, 2) (row, col) or (n, 2 + k) (stack index, row, col) in full-resolution pixels:
            napari Points data in the layer's data coordinates.
        colors : array-like
            (n, 3|4) sRGB (uint8, or float in [0, 1] like napari's face colours), or Lab with
            ``space="lab"``; see :func:`colors_to_ab`.
        radius : float or array-like (n,)
            Radius in pixels (napari's point ``size`` / 2).
        """
        coords = np.asarray(coords, np.float64)
        if coords.ndim == 1 and coords.size == 0:
            coords = coords.reshape(0, 2)
        return cls(
            coords=coords,
            ab=colors_to_ab(colors, space) if len(coords) else np.zeros((0, 2)),
            radius=radius,
        )

    @classmethod
    def from_labels(
        cls, mask: Any, colors: Mapping[int, Any], *, space: str = "srgb"
    ) -> ColorHints:
        """Labels mode: each label of ``mask`` (0 = none) is an object filled with its colour.

        ``colors`` maps labels to sRGB (or Lab, ``space="lab"``) colours; labels without a colour
        are not hints.
        """
        labels, ab = _label_colors(colors, space)
        return cls(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), mask, labels, ab, fill=True)

    @classmethod
    def from_strokes(
        cls, mask: Any, colors: Mapping[int, Any], *, space: str = "srgb"
    ) -> ColorHints:
        """Stroke (scribble) hints: the pixels of each label of ``mask`` ask for its colour and
        spread like points do (napari Shapes, drawn into a mask with one label per shape)."""
        labels, ab = _label_colors(colors, space)
        return cls(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), mask, labels, ab, fill=False)

    def combine(self, other: ColorHints) -> ColorHints:
        """Points of both and the mask of whichever has one (strokes only; not Labels mode)."""
        if self.mask is not None and other.mask is not None:
            raise HintError("only one of the hints to combine may carry a mask")
        if self.fill or other.fill:
            raise HintError("Labels-mode hints cannot be combined with other hints")
        if len(self.coords) and len(other.coords) and self.coords.shape[1] != other.coords.shape[1]:
            raise HintError("points to combine must have the same number of coordinates")
        masked = self if self.mask is not None else other
        parts = [h for h in (self, other) if len(h.coords)]
        return ColorHints(
            coords=np.concatenate([h.coords for h in parts]) if parts else np.zeros((0, 2)),
            ab=np.concatenate([h.ab for h in parts]) if parts else np.zeros((0, 2)),
            radius=np.concatenate([h.radius for h in parts]) if parts else np.zeros(0),
            mask=masked.mask,
            mask_labels=masked.mask_labels,
            mask_ab=masked.mask_ab,
        )

    # ------------------------------------------------------------------ queries

    @property
    def is_empty(self) -> bool:
        """Whether there is nothing to apply (no points, no coloured label)."""
        return len(self.coords) == 0 and (self.mask is None or len(self.mask_labels) == 0)

    def check(self, stack_shape: tuple[int, ...], plane_shape: tuple[int, int]) -> None:
        """Raise :class:`HintError` unless these hints fit a result of this shape."""
        k = len(stack_shape)
        if len(self.coords) and self.coords.shape[1] not in (2, 2 + k):
            raise HintError(
                f"points have {self.coords.shape[1]} coordinates; a result with {k} stack axes takes "
                f"2 (row, col: every plane) or {2 + k} (stack index, row, col)"
            )
        if self.mask is not None and self.mask.shape not in (
            tuple(plane_shape),
            (*stack_shape, *plane_shape),
        ):
            raise HintError(
                f"the hint mask has shape {self.mask.shape}; it must be the plane's {tuple(plane_shape)} "
                f"or the whole result's {(*stack_shape, *plane_shape)}"
            )

    def planes(self, stack_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The stack indices of the planes that some hint falls on, in order."""
        if self.is_empty:
            return []
        every = list(np.ndindex(*stack_shape))
        if (len(self.coords) and self.coords.shape[1] == 2) or (
            self.mask is not None
            and self.mask.ndim == 2
            and bool(np.isin(self.mask, self.mask_labels).any())
        ):
            return every
        found: set[tuple[int, ...]] = set()
        k = len(stack_shape)
        if len(self.coords):
            idx = np.rint(self.coords[:, :k]).astype(np.int64)
            inside = np.all((idx >= 0) & (idx < np.asarray(stack_shape, np.int64)), axis=1)
            found.update(tuple(int(i) for i in row) for row in idx[inside])
        if self.mask is not None and len(self.mask_labels):
            for index in every:
                if np.isin(self.mask[index], self.mask_labels).any():
                    found.add(index)
        return [index for index in every if index in found]

    def points_on(self, index: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols), ab, radius of the points on plane ``index``."""
        if not len(self.coords):
            return np.zeros((0, 2)), np.zeros((0, 2), np.float32), np.zeros(0)
        k = self.coords.shape[1] - 2
        if k == 0:
            keep = np.ones(len(self.coords), bool)
        else:
            keep = np.all(np.rint(self.coords[:, :k]) == np.asarray(index[-k:], np.float64), axis=1)
        return self.coords[keep, -2:], self.ab[keep], self.radius[keep]

    def mask_on(self, index: tuple[int, ...]) -> np.ndarray | None:
        if self.mask is None or not len(self.mask_labels):
            return None
        return self.mask if self.mask.ndim == 2 else self.mask[index]

    # ------------------------------------------------------------------ storage

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins and arrays, for layer metadata (a saved session can redo the hints)."""
        return {
            "coords": self.coords.tolist(),
            "ab": self.ab.tolist(),
            "radius": self.radius.tolist(),
            "mask": self.mask,
            "mask_labels": self.mask_labels.tolist(),
            "mask_ab": self.mask_ab.tolist(),
            "fill": self.fill,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ColorHints:
        """Hints from :meth:`to_dict` output."""
        values = dict(values)

        def array(key: str, dtype: Any, width: int | None) -> np.ndarray:
            value = np.asarray(values.get(key, []), dtype)
            return value.reshape(-1, width) if width else value.reshape(-1)

        coords = np.asarray(values.get("coords", []), np.float64)
        width = coords.shape[1] if coords.ndim == 2 and coords.size else 2
        return cls(
            coords=coords.reshape(-1, width),
            ab=array("ab", np.float32, 2),
            radius=array("radius", np.float64, None),
            mask=values.get("mask"),
            mask_labels=array("mask_labels", np.int64, None),
            mask_ab=array("mask_ab", np.float32, 2),
            fill=bool(values.get("fill", False)),
        )


def _label_colors(colors: Mapping[int, Any], space: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(colors, Mapping):
        raise HintError(
            f"label colours must be a mapping {{label: colour}}, got {type(colors).__name__}"
        )
    labels = [int(k) for k in colors if int(k) != 0]
    if not labels:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
    values = [np.asarray(colors[k]).reshape(-1) for k in colors if int(k) != 0]
    return np.asarray(labels, np.int64), colors_to_ab(np.stack(values), space)


def describe_hints(hints: ColorHints, params: HintParams) -> dict[str, Any]:
    """A small JSON-able account of hints and their parameters, for provenance records.

    Counts, the parameters, and (for up to 100 points) each point's position and a*b*; a mask
    is described by its number of coloured labels, not stored.
    """
    account: dict[str, Any] = {"points": len(hints.coords), "params": params.to_dict()}
    if hints.mask is not None:
        account["labels" if hints.fill else "strokes"] = len(hints.mask_labels)
    if 0 < len(hints.coords) <= 100:
        account["point_coords"] = np.round(hints.coords, 2).tolist()
        account["point_ab"] = np.round(hints.ab.astype(np.float64), 2).tolist()
    return account


_CSV_COLUMNS = ("x", "y", "plane", "colour", "color", "radius", "file")


def read_hints_csv(path: str | os.PathLike[str], image: str | None = None) -> ColorHints:
    """Point hints from a CSV file, one per row: ``x, y[, plane], colour`` (the command line's
    ``--hints``).

    Parameters
    ----------
    path : path
        The CSV. Without a header, rows are ``x, y, colour`` or ``x, y, plane, colour``; with
        one, its names say which column is which: ``x`` (column, pixels), ``y`` (row, pixels),
        ``plane`` (index on the stack's first axis), ``colour`` or ``color``, ``radius``
        (pixels, default 5) and ``file`` (the input's file name the row is for; rows without
        one are for every input). A colour is ``#rrggbb``, or ``r g b`` in 0-255 (spaces or
        semicolons between). Empty lines and lines starting with ``#`` are skipped.
    image : str, optional
        The input's file name: only rows for it (or for every input) are kept.

    Raises
    ------
    HintError
        With the line number and what is wrong, for a row or header that cannot be read.
    """
    import csv

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise HintError(f"cannot read the hints file {path}: {exc.strerror or exc}") from None
    rows = [
        (number, [cell.strip() for cell in row])
        for number, row in enumerate(csv.reader(text.splitlines()), start=1)
        if row and any(cell.strip() for cell in row) and not row[0].strip().startswith("#")
    ]
    names: list[str]
    if rows and not _is_number(rows[0][1][0]):
        number, header = rows.pop(0)
        names = [name.lower() for name in header]
        unknown = [name for name in names if name not in _CSV_COLUMNS]
        if unknown or "x" not in names or "y" not in names or not {"colour", "color"} & set(names):
            raise HintError(
                f"{path}, line {number}: the header must name x, y and colour (and may name plane, "
                f"radius, file); got {', '.join(header)}"
            )
        names = ["colour" if name == "color" else name for name in names]
    else:
        names = []
    coords, colours, radii = [], [], []
    with_plane: bool | None = None
    for number, cells in rows:
        columns = names or (
            ["x", "y", "colour"] if len(cells) == 3 else ["x", "y", "plane", "colour"]
        )
        if len(cells) != len(columns):
            raise HintError(
                f"{path}, line {number}: {len(cells)} values; expected {len(columns)} ({', '.join(columns)})"
            )
        row = dict(zip(columns, cells, strict=True))
        if image is not None and row.get("file") and Path(row["file"]).name != Path(image).name:
            continue
        try:
            position = [float(row["y"]), float(row["x"])]
            if row.get("plane", "") != "":
                position.insert(0, float(row["plane"]))
            colour = _parse_colour(row["colour"])
            radius = float(row["radius"]) if row.get("radius", "") != "" else 5.0
        except ValueError as exc:
            raise HintError(f"{path}, line {number}: {exc}") from None
        if with_plane is not None and with_plane != (len(position) == 3):
            raise HintError(f"{path}, line {number}: either every row gives a plane or none does")
        with_plane = len(position) == 3
        coords.append(position)
        colours.append(colour)
        radii.append(radius)
    if not coords:
        return ColorHints.from_points(np.zeros((0, 2)), np.zeros((0, 3)))
    return ColorHints.from_points(np.asarray(coords), np.asarray(colours, np.uint8), radius=radii)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_colour(text: str) -> tuple[int, int, int]:
    """'#rrggbb' or 'r g b' (0-255) -> (r, g, b)."""
    value = text.strip()
    if value.startswith("#") and len(value) == 7:
        try:
            return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)
        except ValueError:
            pass
    parts = value.replace(";", " ").split()
    if len(parts) == 3 and all(p.isdigit() and int(p) <= 255 for p in parts):
        return int(parts[0]), int(parts[1]), int(parts[2])
    raise ValueError(f"colour {text!r} is neither #rrggbb nor 'r g b' with values 0-255")


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
        changes are rendered again with :func:`~napari_chromagan.render.render_srgb` (the
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

"""Colour hints as data: target colours at places (:class:`ColorHints`), checked when made.

A hint is a colour at a place: a point (with a radius), a stroke, or a labelled region; only its
a*, b* are kept (:func:`colors_to_ab`). :func:`describe_hints` gives the small account that
provenance records keep. Applying hints to a result is :mod:`napari_chromagan.edit.hints`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_chromagan.color.lab import rgb_to_lab
from napari_chromagan.edit.hint_params import HintParams
from napari_chromagan.errors import HintError

__all__ = ["ColorHints", "colors_to_ab", "describe_hints"]


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

"""What the Colour hints widget reads from and writes to napari layers, without any widget state.

Hints from a Points, Shapes or Labels layer (:func:`hints_from_layer`), the events after which
they may differ, the preview of one plane, and the "<name> hinted" output layer: finding it, the
model's pixels it starts from, and the metadata that records what was applied.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from napari.layers import Labels, Points, Shapes

from napari_chromagan.color.render import PlaneRenderer, render_srgb
from napari_chromagan.edit.hints import ColorHints, HintParams, describe_hints, hint_plane
from napari_chromagan.napari.layer_result import (
    METADATA_KEY,
    LayerResult,
    is_colorized,
    result_metadata,
)

__all__ = [
    "HINTS_KEY",
    "base_pixels",
    "find_hinted_output",
    "hex_rgb",
    "hint_events",
    "hinted_metadata",
    "hints_from_layer",
    "preview_plane",
]

HINTS_KEY = "chromagan_hints"  # what the output layer says was applied


def hints_from_layer(layer: Any, image: Any, spatial: tuple[int, ...]) -> ColorHints:
    """The hints a napari Points, Shapes or Labels layer holds, for an image of ``spatial`` shape.

    Points: positions mapped through world coordinates into the image's data coordinates
    (a 2D Points layer over a stack: every plane), radius = size / 2, face colours. Shapes:
    drawn into a mask of the image's shape (or the plane's, for 2D shapes), one label per shape,
    its edge colour. Labels: its data (the image's or the plane's shape) and colormap, in Labels
    mode. Raises :class:`~napari_chromagan.errors.HintError` when the layer does not fit.
    """
    plane = tuple(spatial[-2:])
    if isinstance(layer, Points):
        data = np.asarray(layer.data, float)
        if not len(data):
            return ColorHints.from_points(np.zeros((0, 2)), np.zeros((0, 3)))
        if layer.ndim == image.ndim:
            coords = np.array([image.world_to_data(layer.data_to_world(p)) for p in data])
            coords = coords[:, -len(spatial) :]
        else:
            coords = data[:, -2:]
        size = np.broadcast_to(np.asarray(layer.size, float).reshape(-1), (len(data),))
        zoom = np.mean(np.abs(layer.scale[-2:])) / np.mean(np.abs(image.scale[-2:]))
        return ColorHints.from_points(
            coords, np.asarray(layer.face_color)[:, :3], radius=np.maximum(size * zoom / 2, 0.5)
        )
    if isinstance(layer, Shapes):
        if not layer.nshapes:
            return ColorHints.from_points(np.zeros((0, 2)), np.zeros((0, 3)))
        shape = spatial if layer.ndim == len(spatial) else plane
        mask = layer.to_labels(labels_shape=shape)
        edges = np.asarray(layer.edge_color)
        return ColorHints.from_strokes(mask, {i + 1: edges[i, :3] for i in range(layer.nshapes)})
    if isinstance(layer, Labels):
        mask = np.asarray(layer.data)
        present = np.unique(mask)
        colours = {int(v): np.asarray(layer.get_color(int(v)))[:3] for v in present if v != 0}
        return ColorHints.from_labels(mask, colours)
    raise TypeError(
        f"{type(layer).__name__} layers hold no colour hints: use Points, Shapes or Labels"
    )


def preview_plane(
    L: np.ndarray,
    ab: np.ndarray,
    base: np.ndarray,
    hints: ColorHints,
    params: HintParams,
    index: tuple[int, ...],
) -> tuple[tuple[int, ...], np.ndarray]:
    """One plane, as Apply will render it: the changed pixels rendered, the others as they were."""
    new = hint_plane(L, ab, hints, params, index)
    rgb = np.array(base, copy=True)
    moved = (new != ab).any(axis=-1)
    if moved.any():
        rgb[moved] = PlaneRenderer(L).render(new)[moved]
    return index, rgb


def hint_events(layer: Any) -> list[Any]:
    """The events after which a hints layer's hints may differ."""
    events = layer.events
    names = {
        Points: ("data", "face_color", "size"),
        Shapes: ("data", "edge_color"),
        Labels: ("data", "paint", "labels_update", "colormap"),
    }
    for kind, wanted in names.items():
        if isinstance(layer, kind):
            return [getattr(events, n) for n in wanted if hasattr(events, n)]
    return []


def hex_rgb(value: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b); ValueError for anything else."""
    text = value.strip().lstrip("#")
    if len(text) != 6:
        raise ValueError(value)
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def find_hinted_output(viewer: Any, layer: Any) -> Any | None:
    """The colourised "<name> hinted" layer made from ``layer`` earlier, if the viewer has one."""
    for other in viewer.layers:
        stored = other.metadata.get(HINTS_KEY) if isinstance(other.metadata, dict) else None
        if isinstance(stored, dict) and stored.get("base") == layer.name and is_colorized(other):
            return other
    return None


def base_pixels(layer: Any, result: LayerResult) -> np.ndarray:
    """The model's own rendering of the result (the colourised layer's, unless blended)."""
    data = layer.data
    if not result.blend and getattr(data, "shape", None) == (*result.L.shape, 3):
        return np.asarray(data)
    return render_srgb(result.L, result.ab)


def hinted_metadata(
    result: LayerResult,
    base: str,
    existing: dict[str, Any],
    applied: tuple[ColorHints, HintParams, np.ndarray] | None,
) -> dict[str, Any]:
    """The output layer's metadata: a colourisation result (the hinted one once applied)
    and what was applied ({} before, and after Reset).

    ``base`` is the colourised layer's name, ``existing`` the output layer's metadata so far.
    """
    from napari_chromagan.files.provenance import with_hints

    if applied is None:
        stored = dataclasses.replace(result, blend={})
        record: dict[str, Any] = {"base": base}
    else:
        hints, params, ab = applied
        summary = describe_hints(hints, params)
        provenance = None if result.provenance is None else with_hints(result.provenance, summary)
        stored = dataclasses.replace(result, ab=ab, blend={}, provenance=provenance)
        record = {"base": base, "hints": hints.to_dict(), "params": params.to_dict()}
    existing = dict(existing)
    existing.pop(METADATA_KEY, None)
    metadata = result_metadata(stored, existing)
    metadata[HINTS_KEY] = record
    return metadata

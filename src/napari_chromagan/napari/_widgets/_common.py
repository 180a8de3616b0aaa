"""What the dock widgets share: finding colourised layers, the plane under the dims slider, and
moving a napari progress bar on (following the layers is :mod:`._layer_watch`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_chromagan.napari.layer_result import is_colorized

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["advance_progress", "colorized_layers", "plane_index"]


def colorized_layers(viewer: napari.viewer.Viewer) -> list[Any]:
    """The viewer's layers that carry a colourisation result, in layer-list order."""
    return [layer for layer in viewer.layers if is_colorized(layer)]


def plane_index(
    viewer: napari.viewer.Viewer, layer: Any, stack_shape: tuple[int, ...]
) -> tuple[int, ...]:
    """The index, on a result's stack axes, of the plane under the viewer's dims slider.

    Maps the viewer's dims point to the layer's data coordinates (so translated or scaled layers
    work), then takes the stack axes: the leading axes of the layer before its two displayed
    (last) ones. Rounded and clipped into ``stack_shape``; () for a 2D result.
    """
    if not stack_shape:
        return ()
    leading = layer.ndim - 2  # an RGB layer's ndim does not count the colour axis
    position = np.asarray(layer.world_to_data(viewer.dims.point), float)[:leading]
    position = (
        position[-len(stack_shape) :]
        if len(position) >= len(stack_shape)
        else np.zeros(len(stack_shape))
    )
    return tuple(
        int(np.clip(round(p), 0, n - 1)) for p, n in zip(position, stack_shape, strict=True)
    )


def advance_progress(pbar: Any, done: int) -> None:
    """Move a napari progress bar on to ``done`` (planes, bytes...; never back; None: no bar)."""
    if pbar is not None and done > pbar.n:
        pbar.update(done - pbar.n)

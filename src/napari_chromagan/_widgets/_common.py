"""What the Class distribution and Chroma blend widgets share: finding colourised layers, following
them as they are added, removed, renamed or re-colourised, and the plane under the dims slider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..layer_result import is_colorized

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["LayerWatcher", "colorized_layers", "plane_index"]


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


class LayerWatcher:
    """Mixin: connect a widget to every layer's name, metadata and data events.

    Every layer is watched, not only colourised ones: one can become colourised later (Colorize
    updating its output in place). The widget provides ``_watched`` (a set), ``_refresh_layers``
    and ``_on_layer_changed``.
    """

    _watched: set[int]
    _refresh_layers: Any  # the widget's: rebuild its layer list
    _on_layer_changed: Any  # the widget's: a watched layer's data or metadata changed

    def _watch(self, layer: Any) -> None:
        if id(layer) in self._watched:
            return
        self._watched.add(id(layer))
        layer.events.name.connect(self._refresh_layers)
        layer.events.metadata.connect(self._on_layer_changed)
        layer.events.data.connect(self._on_layer_changed)

    def _unwatch(self, layer: Any) -> None:
        if id(layer) not in self._watched:
            return
        self._watched.discard(id(layer))
        layer.events.name.disconnect(self._refresh_layers)
        layer.events.metadata.disconnect(self._on_layer_changed)
        layer.events.data.disconnect(self._on_layer_changed)

    def _on_inserted(self, event: Any) -> None:
        self._watch(event.value)
        self._refresh_layers()

    def _on_removed(self, event: Any) -> None:
        self._unwatch(event.value)
        self._refresh_layers()

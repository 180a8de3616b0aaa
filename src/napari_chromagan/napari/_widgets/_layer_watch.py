"""Following the viewer's layers: one way for every dock widget that offers a choice of layers.

:class:`LayerWatcher` connects a widget to the layer list (inserted, removed, moved) and to each
layer's own events; :func:`refresh_choices` rebuilds a magicgui ComboBox's choices and keeps its
value when it is still offered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["LayerWatcher", "refresh_choices"]


class LayerWatcher:
    """Mixin: follow the viewer's layer list and every watched layer's name, metadata and data.

    Every layer is watched by default, not only colourised ones: one can become colourised later
    (Colorize updating its output in place); a widget narrows that with :meth:`_watches`. A
    layer's name event goes to the widget's ``_refresh_layers`` (rebuild its layer list), the
    events named in ``_layer_events`` to its ``_on_layer_changed``. Call :meth:`_watch_viewer`
    once, from ``__init__``.
    """

    _layer_events: tuple[str, ...] = ("metadata", "data")
    _watched: set[int]
    _refresh_layers: Any  # the widget's: rebuild its layer list
    _on_layer_changed: Any  # the widget's: a watched layer's data or metadata changed

    def _watch_viewer(self, viewer: napari.viewer.Viewer, *, moved: bool = True) -> None:
        """Follow ``viewer``'s layer list (and its order, when ``moved``) and watch its layers."""
        self._watched = set()
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        if moved:
            viewer.layers.events.moved.connect(self._refresh_layers)
        for layer in viewer.layers:
            self._watch(layer)

    def _watches(self, layer: Any) -> bool:
        """Whether ``layer``'s events matter to the widget (all layers, unless overridden)."""
        return True

    def _watch(self, layer: Any) -> None:
        if id(layer) in self._watched or not self._watches(layer):
            return
        self._watched.add(id(layer))
        layer.events.name.connect(self._refresh_layers)
        for name in self._layer_events:
            getattr(layer.events, name).connect(self._on_layer_changed)

    def _unwatch(self, layer: Any) -> None:
        if id(layer) not in self._watched:
            return
        self._watched.discard(id(layer))
        layer.events.name.disconnect(self._refresh_layers)
        for name in self._layer_events:
            getattr(layer.events, name).disconnect(self._on_layer_changed)

    def _on_inserted(self, event: Any) -> None:
        self._watch(event.value)
        self._refresh_layers()

    def _on_removed(self, event: Any) -> None:
        self._unwatch(event.value)
        self._refresh_layers()


def refresh_choices(combo: Any, *, blocked: bool = True) -> None:
    """Rebuild a magicgui ComboBox's choices; keep its value if it is still one of them.

    With ``blocked``, the combo's ``changed`` signal stays quiet meanwhile (the caller compares
    the value with what it had and reacts once).
    """
    current = combo.value

    def rebuild() -> None:
        combo.reset_choices()
        if any(current is value for value in combo.choices):
            combo.value = current

    if blocked:
        with combo.changed.blocked():
            rebuild()
    else:
        rebuild()

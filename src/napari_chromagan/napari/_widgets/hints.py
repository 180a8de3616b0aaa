"""The Colour hints dock widget: "this is red", from a Points, Shapes or Labels layer.

A thin front end to :mod:`napari_chromagan.edit.hints`. It reads target colours from a hints layer
(Points: face colours and sizes; Shapes: edge colours; Labels: its colormap, in Labels mode),
previews the plane under the dims slider a moment after the hints or sliders change (in a
``thread_worker``: a 1024 x 1024 plane takes about a second), and Apply does every plane in a
worker with progress and Cancel. The result goes to a new layer "<name> hinted", which carries a
colourisation result like any colourised layer (so Chroma blend and Class distribution work on
it) and, under ``metadata["chromagan_hints"]``, the hints and parameters applied, so a saved
session can redo them. Reset brings the model's colours back into that layer.

No user layer is written into: the colourised layer and the hints layer are only read; the
output layer is the widget's own, and its pixels are a copy made when it was created.

This module holds the controls and the layer choices; the preview, Apply and Reset are
:mod:`._hint_runs`, and reading hints from layers (and the output layer's metadata) is
:mod:`._hint_layers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSlider, Label, LineEdit, PushButton
from napari.layers import Labels, Points, Shapes
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from napari_chromagan.color.render import prepare_gamut_table
from napari_chromagan.edit.hint_params import EDGE_RANGE
from napari_chromagan.edit.hints import ColorHints, HintParams, colors_to_ab
from napari_chromagan.errors import ChromaGANError
from napari_chromagan.napari._threads import start_thread
from napari_chromagan.napari._widgets._common import plane_index
from napari_chromagan.napari._widgets._hint_layers import (
    HINTS_KEY,
    base_pixels,
    find_hinted_output,
    hex_rgb,
    hint_events,
    hints_from_layer,
)
from napari_chromagan.napari._widgets._hint_runs import HintRuns, HintState
from napari_chromagan.napari._widgets._layer_watch import LayerWatcher, refresh_choices
from napari_chromagan.napari.layer_result import get_layer_result, is_colorized

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["HINTS_KEY", "ColorHintsWidget", "hints_from_layer"]

DEBOUNCE_MS = 300  # the preview waits this long after the last change
WORKING = [("0.07 Mpixel (fast)", 1 << 16), ("0.26 Mpixel", 1 << 18), ("1 Mpixel (slow)", 1 << 20)]
DEFAULT_COLOUR = "#dc1e1e"


class ColorHintsWidget(HintRuns, LayerWatcher, Container):
    """Give a colourised layer target colours from a hints layer; preview, apply, reset.

    Attributes
    ----------
    worker : worker or None
        The last preview or Apply worker (tests wait on it).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self.worker: Any = None
        self._state: HintState | None = None
        self._hints_layer_watched: Any = None
        self._applying = False
        self._previewing = False
        self._again = False
        self._writing = False
        self._pbar: napari_progress | None = None
        self._dialog: Any = None
        self._build_controls()
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.preview)
        self._connect(viewer)
        self._refresh_layers()
        self._on_layer_chosen()
        self._on_hints_chosen()
        start_thread(prepare_gamut_table, name="chromagan-gamut-table")

    def _build_controls(self) -> None:
        self._layer = ComboBox(label="Colourised layer", choices=self._layer_choices)
        self._hints = ComboBox(label="Hints layer", choices=self._hint_choices)
        self._new_points = PushButton(text="New hint points")
        self._colour = LineEdit(label="Hint colour", value=DEFAULT_COLOUR)
        self._pick = PushButton(text="Pick colour…")
        defaults = HintParams()
        self._strength = FloatSlider(
            label="Strength %", value=100.0 * defaults.strength, min=0, max=100, step=1
        )
        self._reach = FloatSlider(
            label="Reach % of side", value=100.0 * defaults.reach, min=1, max=100, step=1
        )
        self._edge = FloatSlider(
            label="Edge (L* step)",
            value=defaults.edge,
            min=0.5,
            max=min(20.0, EDGE_RANGE[1]),
            step=0.1,
        )
        self._feather = FloatSlider(
            label="Feather px", value=defaults.feather, min=0, max=50, step=0.5
        )
        self._working = ComboBox(
            label="Working resolution", choices=WORKING, value=defaults.working_pixels
        )
        self._apply_button = PushButton(text="Apply to whole stack")
        self._reset_button = PushButton(text="Reset")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")
        self._status.native.setWordWrap(True)
        self._sliders = (self._strength, self._reach, self._edge, self._feather, self._working)
        self.extend(
            [
                self._layer,
                self._hints,
                Container(
                    widgets=[self._new_points, self._pick], layout="horizontal", labels=False
                ),
                self._colour,
                *self._sliders,
                Container(
                    widgets=[self._apply_button, self._reset_button, self._cancel_button],
                    layout="horizontal",
                    labels=False,
                ),
                self._status,
            ]
        )

    def _connect(self, viewer: napari.viewer.Viewer) -> None:
        for control in self._sliders:
            control.changed.connect(self._schedule)
        self._layer.changed.connect(self._on_layer_chosen)
        self._hints.changed.connect(self._on_hints_chosen)
        self._new_points.changed.connect(self.new_points_layer)
        self._pick.changed.connect(self._pick_colour)
        self._colour.changed.connect(self._on_colour)
        self._apply_button.changed.connect(self.apply_to_stack)
        self._reset_button.changed.connect(self.reset)
        self._cancel_button.changed.connect(self.cancel)
        viewer.dims.events.current_step.connect(self._on_dims)
        self._watch_viewer(viewer, moved=False)

    # ------------------------------------------------------------------ public

    @property
    def layer(self) -> Any | None:
        return self._layer.value

    @layer.setter
    def layer(self, layer: Any) -> None:
        self._layer.value = layer

    @property
    def hints_layer(self) -> Any | None:
        return self._hints.value

    @hints_layer.setter
    def hints_layer(self, layer: Any) -> None:
        self._hints.value = layer

    @property
    def output(self) -> Any | None:
        """The "<name> hinted" layer, once a preview or Apply made it."""
        return None if self._state is None else self._state.output

    @property
    def running(self) -> bool:
        """Whether Apply is running (from start to finished)."""
        return self._applying

    def params(self) -> HintParams:
        """The parameters the controls show."""
        return HintParams(
            strength=self._strength.value / 100.0,
            reach=self._reach.value / 100.0,
            edge=self._edge.value,
            feather=self._feather.value,
            working_pixels=int(self._working.value),
        )

    def colour(self) -> str:
        """The hint colour for new points, as '#rrggbb'."""
        return self._colour.value

    def set_colour(self, colour: str) -> None:
        self._colour.value = colour

    def current_index(self) -> tuple[int, ...]:
        state = self._state
        if state is None:
            return ()
        return plane_index(self._viewer, state.layer, state.result.stack_shape)

    def read_hints(self) -> ColorHints | None:
        """The hints layer's hints, or None (with a message in the status line) when it has none."""
        state, layer = self._state, self._hints.value
        if state is None or layer is None:
            return None
        try:
            return hints_from_layer(layer, state.layer, state.result.L.shape)
        except (ChromaGANError, TypeError, ValueError) as exc:
            self._status.value = f"hints layer {layer.name!r}: {exc}"
            return None

    def new_points_layer(self, _value: Any = None) -> Any:
        """A Points layer over the colourised layer, in add mode with the hint colour; returns it."""
        state = self._state
        if state is None:
            show_info("Colour hints: choose a colourised layer first.")
            return None
        source = state.layer
        side = max(state.result.L.shape[-2:])
        points = self._viewer.add_points(
            np.zeros((0, source.ndim)),
            ndim=source.ndim,
            name=f"{source.name} hints",
            size=max(8.0, round(0.02 * side)),
            face_color=self.colour(),
            border_color="white",
            scale=source.scale,
            translate=source.translate,
            rotate=source.rotate,
            shear=source.shear,
            affine=source.affine.affine_matrix,
        )
        points.current_face_color = self.colour()
        points.mode = "add"
        self._hints.value = points
        self._viewer.layers.selection.active = points
        return points

    # ------------------------------------------------------------------ layers

    def _layer_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if is_colorized(layer) and HINTS_KEY not in layer.metadata
        ]

    def _hint_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        layers = [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, (Points, Shapes, Labels))
        ]
        return [("(none)", None), *layers]

    def _refresh_layers(self, _event: Any = None) -> None:
        for combo in (self._layer, self._hints):
            refresh_choices(combo)
        if self._layer.value is not (self._state.layer if self._state else None):
            self._on_layer_chosen()
        if self._hints.value is not self._hints_layer_watched:
            self._on_hints_chosen()

    def _on_layer_changed(self, event: Any = None) -> None:
        if self._writing:
            return
        source = getattr(event, "source", None)
        state = self._state
        if source is None:
            return
        if state is not None and source is state.output:
            return
        if is_colorized(source) != any(source is value for _, value in self._layer_choices()):
            self._refresh_layers()
        elif (
            state is not None and source is state.layer and getattr(event, "type", "") == "metadata"
        ):
            self._on_layer_chosen()  # re-colourised: start again from its new result

    def _on_removed(self, event: Any) -> None:
        state = self._state
        if state is not None and event.value is state.output:
            state.output = None
            state.previewed.clear()
        super()._on_removed(event)

    def _on_layer_chosen(self, _value: Any = None) -> None:
        self._state = None
        layer = self._layer.value
        if layer is None:
            self._enable(False)
            self._status.value = "No colourised layer: run Colorize on an image layer first."
            return
        try:
            result = get_layer_result(layer)
        except ValueError as exc:
            self._enable(False)
            self._status.value = str(exc)
            return
        self._state = HintState(
            layer=layer, result=result, output=find_hinted_output(self._viewer, layer)
        )
        if self._state.output is not None:
            self._state.base = base_pixels(layer, result)
        self._apply_button.text = "Apply to whole stack" if result.stack_shape else "Apply"
        self._enable(True)
        self._status.value = (
            "Choose or make a hints layer, then add hints." if self._hints.value is None else ""
        )

    def _on_hints_chosen(self, _value: Any = None) -> None:
        old = self._hints_layer_watched
        if old is not None:
            for emitter in hint_events(old):
                emitter.disconnect(self._schedule)
        layer = self._hints.value
        self._hints_layer_watched = layer
        if layer is not None:
            for emitter in hint_events(layer):
                emitter.connect(self._schedule)
        self._feather.visible = isinstance(layer, Labels)
        self._reach.visible = not isinstance(layer, Labels)
        self._schedule()

    def _enable(self, enabled: bool) -> None:
        for control in (*self._sliders, self._apply_button, self._reset_button, self._new_points):
            control.enabled = enabled

    # ------------------------------------------------------------------ colour

    def _on_colour(self, _value: Any = None) -> None:
        try:
            colors_to_ab([hex_rgb(self._colour.value)])
        except (ChromaGANError, ValueError):
            self._status.value = f"not a colour: {self._colour.value!r} (use #rrggbb)"
            return
        layer = self._hints.value
        if isinstance(layer, Points):
            # the colour is for the next clicks: napari would also recolour the selected points
            # (a point just added is selected), so the selection is let go first
            layer.selected_data = set()
            layer.current_face_color = self._colour.value

    def _pick_colour(self, _value: Any = None) -> None:
        from qtpy.QtGui import QColor
        from qtpy.QtWidgets import QColorDialog

        if self._dialog is None:  # not modal: pick while clicking points
            self._dialog = QColorDialog(QColor(self._colour.value), self.native)
            self._dialog.currentColorChanged.connect(lambda c: self.set_colour(c.name()))
        self._dialog.show()

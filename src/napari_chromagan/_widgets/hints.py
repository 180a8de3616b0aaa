"""The Colour hints dock widget: "this is red", from a Points, Shapes or Labels layer.

A thin front end to :mod:`napari_chromagan.hints`. It reads target colours from a hints layer
(Points: face colours and sizes; Shapes: edge colours; Labels: its colormap, in Labels mode),
previews the plane under the dims slider a moment after the hints or sliders change (in a
``thread_worker``: a 1024 x 1024 plane takes about a second), and Apply does every plane in a
worker with progress and Cancel. The result goes to a new layer "<name> hinted", which carries a
colourisation result like any colourised layer (so Chroma blend and Class distribution work on
it) and, under ``metadata["chromagan_hints"]``, the hints and parameters applied, so a saved
session can redo them. Reset brings the model's colours back into that layer.

No user layer is written into: the colourised layer and the hints layer are only read; the
output layer is the widget's own, and its pixels are a copy made when it was created.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSlider, Label, LineEdit, PushButton
from napari.layers import Labels, Points, Shapes
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from .._threads import start_thread
from ..errors import ChromaGANError
from ..hints import (
    EDGE_RANGE,
    ColorHints,
    HintParams,
    colors_to_ab,
    describe_hints,
    hint_plane,
    iter_color_hints,
)
from ..layer_result import (
    METADATA_KEY,
    LayerResult,
    get_layer_result,
    is_colorized,
    result_metadata,
)
from ..progress import Progress
from ..render import PlaneRenderer, prepare_gamut_table, render_srgb
from ._common import LayerWatcher, plane_index

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["HINTS_KEY", "ColorHintsWidget", "hints_from_layer"]

log = logging.getLogger(__name__)

HINTS_KEY = "chromagan_hints"  # what the output layer says was applied
DEBOUNCE_MS = 300  # the preview waits this long after the last change
WORKING = [("0.07 Mpixel (fast)", 1 << 16), ("0.26 Mpixel", 1 << 18), ("1 Mpixel (slow)", 1 << 20)]
DEFAULT_COLOUR = "#dc1e1e"


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


@dataclass
class _State:
    """What the widget knows about the chosen colourised layer."""

    layer: Any
    result: LayerResult
    output: Any | None = None  # our "<name> hinted" layer, once made
    previewed: set[tuple[int, ...]] = field(default_factory=set)  # planes showing a preview
    base: np.ndarray | None = None  # the model's rendering (what Reset brings back)


class ColorHintsWidget(LayerWatcher, Container):
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
        self._state: _State | None = None
        self._hints_layer_watched: Any = None
        self._applying = False
        self._previewing = False
        self._again = False
        self._writing = False
        self._pbar: napari_progress | None = None
        self._watched: set[int] = set()
        self._dialog: Any = None

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

        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.preview)

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
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.dims.events.current_step.connect(self._on_dims)
        for layer in viewer.layers:
            self._watch(layer)
        self._refresh_layers()
        self._on_layer_chosen()
        self._on_hints_chosen()
        start_thread(prepare_gamut_table, name="chromagan-gamut-table")

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

    def preview(self, _value: Any = None) -> Any:
        """Start the preview of the plane under the dims slider in a worker; returns it (or None)."""
        self._timer.stop()
        state = self._state
        if state is None or self._applying:
            return None
        if self._previewing:
            self._again = True  # one more when this one is done
            return None
        hints = self.read_hints()
        if hints is None:
            return None
        try:
            params = self.params()
            index = self.current_index()
            hints.check(state.result.stack_shape, state.result.L.shape[-2:])
        except ChromaGANError as exc:
            self._status.value = str(exc)
            return None
        if state.output is None:
            self._make_output(state)
        base_plane = state.base[index]
        worker = thread_worker(_preview_work, start_thread=False)(
            state.result.L[index], state.result.ab[index], base_plane, hints, params, index
        )
        worker.returned.connect(lambda value: self._on_preview(state, hints, params, value))
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_preview_finished)
        self.worker = worker
        self._previewing = True
        self._status.value = "previewing the plane under the slider…"
        worker.start()
        return worker

    def apply_to_stack(self, _value: Any = None) -> Any:
        """Apply the hints to every plane in a worker (progress, Cancel); returns it (or None)."""
        state = self._state
        if state is None:
            show_info("Colour hints: choose a colourised layer first.")
            return None
        if self._applying:
            show_info("Colour hints are being applied: wait for it, or press Cancel.")
            return None
        hints = self.read_hints()
        if hints is None:
            show_info(f"Colour hints: {self._status.value or 'choose a hints layer first.'}")
            return None
        params = self.params()
        result = state.result
        try:
            hints.check(result.stack_shape, result.L.shape[-2:])
        except ChromaGANError as exc:
            show_error(f"Colour hints: {exc}")
            return None
        self._timer.stop()
        if state.output is None:
            self._make_output(state)
        planes = hints.planes(result.stack_shape)
        out_ab = np.array(result.ab, copy=True)  # float16 as stored: what it will be stored as
        out_rgb = np.array(state.base, copy=True)
        self._pbar = napari_progress(
            total=max(1, len(planes)), desc=f"Colour hints {state.layer.name}"
        )
        worker = thread_worker(iter_color_hints, start_thread=False)(
            result.L, result.ab, hints, params, out_ab, out_rgb
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(
            lambda _done: self._on_applied(state, hints, params, out_ab, out_rgb)
        )
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_apply_finished)
        self.worker = worker
        self._set_applying(True)
        self._status.value = f"applying hints to {len(planes)} plane(s)…"
        worker.start()
        return worker

    def cancel(self, _value: Any = None) -> None:
        """Stop Apply at its next plane; the output layer keeps its pixels."""
        if self._applying:
            self.worker.quit()
            self._status.value = "cancelling…"

    def reset(self, _value: Any = None) -> None:
        """The model's colours again in the output layer, and no hints recorded on it."""
        state = self._state
        if state is None or self._applying or state.output is None:
            return
        self._timer.stop()
        self._write(state, np.array(state.base, copy=True), self._metadata(state, None))
        state.previewed.clear()
        self._status.value = "reset: the output shows the model's colours"

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
            current = combo.value
            with combo.changed.blocked():
                combo.reset_choices()
                if any(current is value for value in combo.choices):
                    combo.value = current
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
        self._state = _State(layer=layer, result=result, output=self._find_output(layer))
        if self._state.output is not None:
            self._state.base = self._base_pixels(self._state)
        self._apply_button.text = "Apply to whole stack" if result.stack_shape else "Apply"
        self._enable(True)
        self._status.value = (
            "Choose or make a hints layer, then add hints." if self._hints.value is None else ""
        )

    def _on_hints_chosen(self, _value: Any = None) -> None:
        old = self._hints_layer_watched
        if old is not None:
            for emitter in _hint_events(old):
                emitter.disconnect(self._schedule)
        layer = self._hints.value
        self._hints_layer_watched = layer
        if layer is not None:
            for emitter in _hint_events(layer):
                emitter.connect(self._schedule)
        self._feather.visible = isinstance(layer, Labels)
        self._reach.visible = not isinstance(layer, Labels)
        self._schedule()

    def _find_output(self, layer: Any) -> Any | None:
        for other in self._viewer.layers:
            stored = other.metadata.get(HINTS_KEY) if isinstance(other.metadata, dict) else None
            if (
                isinstance(stored, dict)
                and stored.get("base") == layer.name
                and is_colorized(other)
            ):
                return other
        return None

    def _base_pixels(self, state: _State) -> np.ndarray:
        """The model's own rendering of the result (the colourised layer's, unless blended)."""
        data = state.layer.data
        if not state.result.blend and getattr(data, "shape", None) == (*state.result.L.shape, 3):
            return np.asarray(data)
        return render_srgb(state.result.L, state.result.ab)

    def _make_output(self, state: _State) -> None:
        state.base = self._base_pixels(state)
        _, settings, _ = state.layer.as_layer_data_tuple()
        settings = {k: v for k, v in settings.items() if k not in ("name", "metadata", "rgb")}
        self._writing = True
        try:
            state.output = self._viewer.add_image(
                np.array(state.base, copy=True),
                rgb=True,
                name=f"{state.layer.name} hinted",
                metadata=self._metadata(state, None),
                **settings,
            )
        finally:
            self._writing = False
        self._watch(state.output)

    def _metadata(
        self, state: _State, applied: tuple[ColorHints, HintParams, np.ndarray] | None
    ) -> dict[str, Any]:
        """The output layer's metadata: a colourisation result (the hinted one once applied)
        and what was applied ({} before, and after Reset)."""
        result = state.result
        from ..provenance import with_hints

        if applied is None:
            stored = dataclasses.replace(result, blend={})
            record: dict[str, Any] = {"base": state.layer.name}
        else:
            hints, params, ab = applied
            summary = describe_hints(hints, params)
            provenance = (
                None if result.provenance is None else with_hints(result.provenance, summary)
            )
            stored = dataclasses.replace(result, ab=ab, blend={}, provenance=provenance)
            record = {
                "base": state.layer.name,
                "hints": hints.to_dict(),
                "params": params.to_dict(),
            }
        existing = {} if state.output is None else dict(state.output.metadata)
        existing.pop(METADATA_KEY, None)
        metadata = result_metadata(stored, existing)
        metadata[HINTS_KEY] = record
        return metadata

    def _write(
        self, state: _State, data: np.ndarray | None, metadata: dict[str, Any] | None
    ) -> None:
        self._writing = True
        try:
            if data is not None:
                state.output.data = data
            if metadata is not None:
                state.output.metadata = metadata
        finally:
            self._writing = False

    # ------------------------------------------------------------------ preview

    def _schedule(self, _event: Any = None) -> None:
        if self._state is not None and not self._applying:
            self._timer.start()

    def _on_dims(self, _event: Any = None) -> None:
        state = self._state
        if state is None or not state.result.stack_shape or state.output is None:
            return
        if self.current_index() not in state.previewed:
            self._schedule()

    def _on_preview(self, state: _State, hints: ColorHints, params: HintParams, value: Any) -> None:
        if state is not self._state or state.output is None:
            return
        index, rgb = value
        data = state.output.data
        if data is state.base or not isinstance(data, np.ndarray) or not data.flags.writeable:
            data = np.array(data, copy=True)
            self._write(state, data, None)
        data[index] = rgb
        state.output.refresh()
        if not state.result.stack_shape:  # 2D: the preview is the whole result
            ab = hint_plane(state.result.L, state.result.ab, hints, params)
            self._write(state, None, self._metadata(state, (hints, params, ab)))
            self._status.value = "applied (a single plane: the preview is the result)"
            return
        state.previewed.add(index)
        n = int(np.prod(state.result.stack_shape))
        self._status.value = (
            f"preview on {len(state.previewed)} of {n} planes: Apply to do them all"
        )

    def _on_preview_finished(self) -> None:
        self._previewing = False
        if self._again:
            self._again = False
            self._schedule()

    # ------------------------------------------------------------------ apply

    def _on_yielded(self, event: Progress) -> None:
        if self._pbar is not None and event.done > self._pbar.n:
            self._pbar.update(event.done - self._pbar.n)

    def _on_applied(
        self, state: _State, hints: ColorHints, params: HintParams, ab: np.ndarray, rgb: np.ndarray
    ) -> None:
        if state is not self._state or state.output is None:
            return
        self._write(state, rgb, self._metadata(state, (hints, params, ab)))
        state.previewed.clear()
        self._status.value = "applied to the whole layer"

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, ChromaGANError):
            show_error(f"Colour hints: {exc}")
        else:
            log.error("napari-chromagan: colour hints failed", exc_info=exc)
            show_error(f"Colour hints failed ({type(exc).__name__}: {exc}).")

    def _on_apply_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._set_applying(False)
        if self.worker is not None and self.worker.abort_requested:
            self._status.value = "cancelled: the output layer keeps its pixels"

    def _set_applying(self, running: bool) -> None:
        self._applying = running
        for control in (
            *self._sliders,
            self._layer,
            self._hints,
            self._apply_button,
            self._reset_button,
        ):
            control.enabled = not running
        self._cancel_button.enabled = running

    def _enable(self, enabled: bool) -> None:
        for control in (*self._sliders, self._apply_button, self._reset_button, self._new_points):
            control.enabled = enabled

    # ------------------------------------------------------------------ colour

    def _on_colour(self, _value: Any = None) -> None:
        try:
            colors_to_ab([_hex_rgb(self._colour.value)])
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


def _preview_work(
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


def _hint_events(layer: Any) -> list[Any]:
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


def _hex_rgb(value: str) -> tuple[int, int, int]:
    text = value.strip().lstrip("#")
    if len(text) != 6:
        raise ValueError(value)
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)

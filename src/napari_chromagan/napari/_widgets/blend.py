"""The Chroma blend dock widget: strength, gray blend, colour balance, hue and stack smoothing.

Everything is re-rendered from the model's L*, a*, b* stored on the colourised layer (never by
re-running the network), with :mod:`napari_chromagan.edit.blend`. Moving a slider re-renders only the
plane under the dims slider (a live preview, about 25-30 ms for a 1024 x 1024 plane on two CPU
cores); "Apply to whole stack" renders every plane in a ``thread_worker`` and records the
settings in the layer's metadata; "Reset" brings back the model's output.

The widget never writes into an array it did not make: before its first change to a layer it
copies the layer's data and swaps the copy in, then updates that copy in place. While the layer
still shows the model's own rendering, the widget keeps a reference to those pixels, so that
Reset (and sliders moved back to neutral) restore them exactly and at once; that costs memory
for one more copy of the layer once a change is made.

A re-render could not replace that reference: the preview's table method
(:mod:`napari_chromagan.color.render`) is one 8-bit level off the engine on 0.003-0.2 % of a photo's
pixels (``tests/test_render.py``), and even the exact method gives the engine's pixels back only
for a result rendered on the CPU from float32 chroma (not from a GPU, nor for hinted pixels).

The smoothing preview sums the neighbouring planes' a*, b* (within 4 sigma): a large sigma
makes moving the sigma slider itself slower than the other sliders, whose moves reuse it.

This module holds the sliders and the layer choice; rendering planes into the layer and the
whole-stack worker are :mod:`._blend_runs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSlider, Label, PushButton
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error

from napari_chromagan.color.render import prepare_gamut_table
from napari_chromagan.edit.blend import HUE_RANGE, BlendParams
from napari_chromagan.napari._threads import start_thread
from napari_chromagan.napari._widgets._blend_runs import BlendRuns, BlendState
from napari_chromagan.napari._widgets._common import plane_index
from napari_chromagan.napari._widgets._layer_watch import LayerWatcher, refresh_choices
from napari_chromagan.napari.layer_result import LayerResult, get_layer_result, is_colorized

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["ChromaBlendWidget"]

OFFSET_LIMIT = 30.0  # a*/b* offset slider range (the core accepts up to 128)
SIGMA_LIMIT = 10.0  # smoothing slider range, in planes


def _axis_name(layer: Any, axis: int) -> str:
    labels = getattr(layer, "axis_labels", None)
    if labels is not None and axis < len(labels) and labels[axis]:
        return f"{labels[axis]} (axis {axis})"
    return f"axis {axis}"


class ChromaBlendWidget(BlendRuns, LayerWatcher, Container):
    """Adjust the colours of a colourised layer without re-running the network.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose colourised layers are offered.

    Attributes
    ----------
    worker : GeneratorWorker or None
        The last "Apply to whole stack" or "Reset" worker (tests wait on ``worker.finished``).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self.worker: Any = None
        self._running = False
        self._state: BlendState | None = None
        self._writing = False  # our own layer.data / layer.metadata changes
        self._pbar: napari_progress | None = None
        self._build_controls()
        self._connect(viewer)
        self._refresh_layers()
        self._on_layer_chosen()
        # the first slider move should not wait for the gamut table
        start_thread(prepare_gamut_table, name="chromagan-gamut-table")

    def _build_controls(self) -> None:
        self._layer = ComboBox(label="Layer", choices=self._layer_choices)
        self._strength = FloatSlider(
            label="Chroma strength %", value=100.0, min=0.0, max=200.0, step=1.0
        )
        self._gray = FloatSlider(label="Gray blend %", value=0.0, min=0.0, max=100.0, step=1.0)
        self._a_offset = FloatSlider(
            label="a* offset", value=0.0, min=-OFFSET_LIMIT, max=OFFSET_LIMIT, step=0.5
        )
        self._b_offset = FloatSlider(
            label="b* offset", value=0.0, min=-OFFSET_LIMIT, max=OFFSET_LIMIT, step=0.5
        )
        self._hue = FloatSlider(
            label="Hue rotation °", value=0.0, min=HUE_RANGE[0], max=HUE_RANGE[1], step=1.0
        )
        self._sigma = FloatSlider(
            label="Smoothing σ (planes)", value=0.0, min=0.0, max=SIGMA_LIMIT, step=0.1
        )
        self._axis = ComboBox(label="Smooth along", choices=self._axis_choices)
        self._apply_button = PushButton(text="Apply to whole stack")
        self._reset_button = PushButton(text="Reset")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")
        self._sliders = (
            self._strength,
            self._gray,
            self._a_offset,
            self._b_offset,
            self._hue,
            self._sigma,
        )
        self.extend(
            [
                self._layer,
                *self._sliders,
                self._axis,
                Container(
                    widgets=[self._apply_button, self._reset_button, self._cancel_button],
                    layout="horizontal",
                    labels=False,
                ),
                self._status,
            ]
        )

    def _connect(self, viewer: napari.viewer.Viewer) -> None:
        for control in (*self._sliders, self._axis):
            control.changed.connect(self._on_control_changed)
        self._layer.changed.connect(self._on_layer_chosen)
        self._apply_button.changed.connect(self.apply_to_stack)
        self._reset_button.changed.connect(self.reset)
        self._cancel_button.changed.connect(self.cancel)
        viewer.dims.events.current_step.connect(self._on_dims)
        self._watch_viewer(viewer)

    # ------------------------------------------------------------------ public

    @property
    def layer(self) -> Any | None:
        return self._layer.value

    @layer.setter
    def layer(self, layer: Any) -> None:
        self._layer.value = layer

    @property
    def running(self) -> bool:
        """Whether "Apply to whole stack" or "Reset" is rendering (from start to finished)."""
        return self._running

    def params(self) -> BlendParams:
        """The settings the sliders show."""
        return BlendParams(
            strength=self._strength.value / 100.0,
            gray=self._gray.value / 100.0,
            a_offset=self._a_offset.value,
            b_offset=self._b_offset.value,
            hue_degrees=self._hue.value,
            smooth_sigma=self._sigma.value if self._stack_ndim() else 0.0,
            smooth_axis=int(self._axis.value or 0) if self._stack_ndim() > 1 else 0,
        )

    def set_params(self, params: BlendParams, preview: bool = True) -> None:
        """Move the sliders to ``params`` (one preview at the end, when ``preview``)."""
        values = {
            self._strength: params.strength * 100.0,
            self._gray: params.gray * 100.0,
            self._a_offset: params.a_offset,
            self._b_offset: params.b_offset,
            self._hue: params.hue_degrees,
            self._sigma: params.smooth_sigma,
        }
        for slider, value in values.items():
            with slider.changed.blocked():
                # settings made in code may lie beyond the sliders' usual ranges: widen them
                slider.min, slider.max = min(slider.min, value), max(slider.max, value)
                slider.value = value
        if params.smooth_axis in [value for _, value in self._axis_choices()]:
            with self._axis.changed.blocked():
                self._axis.value = params.smooth_axis
        if preview:
            self.preview()

    def current_index(self) -> tuple[int, ...]:
        """The plane under the dims slider, on the chosen result's stack axes."""
        state = self._state
        if state is None:
            return ()
        return plane_index(self._viewer, state.layer, state.result.stack_shape)

    def preview(self) -> bool:
        """Re-render the plane under the dims slider with the sliders' settings.

        Returns whether a plane was rendered.
        """
        state = self._state
        if state is None or self.running:
            return False
        params = self.params()
        index = self.current_index()
        try:
            plane = self._render(state, params, index)
        except (ValueError, MemoryError) as exc:
            show_error(f"Chroma blend: {exc}")
            return False
        self._write_plane(state, index, plane)
        if params == state.applied:
            state.previewed.discard(index)
        else:
            state.previewed.add(index)
        if not state.result.stack_shape:  # a 2D result: the preview is the whole layer
            self._record(state, params)
            state.previewed.clear()
        self._show_status()
        return True

    def apply_to_stack(self, _value: Any = None) -> Any:
        """Render every plane with the sliders' settings in a worker; return it.

        Returns None when no worker was needed (the model's output was brought back as it is)
        or none could be started.
        """
        return self._apply(self.params())

    def reset(self, _value: Any = None) -> Any:
        """Back to the model's output for the whole layer; returns the worker if one was needed."""
        if self._state is None or self.running:
            return None
        self.set_params(BlendParams(), preview=False)
        return self._apply(BlendParams())

    def _apply(self, params: BlendParams) -> Any:
        state = self._state
        if (
            state is not None
            and not self.running
            and params.is_identity
            and state.original is not None
        ):
            # the model's own pixels are still at hand: exact, and instant
            self._set_data(state, state.original)
            state.owned = None  # the next change copies again
            self._record(state, params)
            state.previewed.clear()
            self._show_status()
            return None
        return self._start(params)

    def cancel(self, _value: Any = None) -> None:
        """Stop "Apply to whole stack" at its next plane; the layer keeps its pixels."""
        if self.running:
            self.worker.quit()
            self._status.value = "cancelling…"

    # ------------------------------------------------------------------ layers

    def _layer_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self._viewer.layers if is_colorized(layer)]

    def _refresh_layers(self, _event: Any = None) -> None:
        refresh_choices(self._layer)
        if self._layer.value is not (self._state.layer if self._state else None):
            self._on_layer_chosen()

    def _on_layer_changed(self, event: Any = None) -> None:
        if self._writing:
            return
        source = getattr(event, "source", None)
        if source is None:
            return
        if is_colorized(source) != any(source is layer for layer in self._layer.choices):
            self._refresh_layers()  # became colourised, or lost its result
        elif self._layer.value is source:
            if self.running:  # the stack being rendered is stale now
                self.worker.quit()
            self._on_layer_chosen()  # re-colourised (or edited): start again from what it holds

    def _on_layer_chosen(self, _value: Any = None) -> None:
        self._state = None
        layer = self._layer.value
        if layer is None:
            self._enable(False)
            self._status.value = "No colourised layer: run Colorize on an image layer first."
            return
        try:
            result = get_layer_result(layer)
            applied = BlendParams.from_dict(result.blend)
            data = layer.data
            if (
                getattr(data, "shape", None) != (*result.L.shape, 3)
                or getattr(data, "dtype", None) != np.uint8
            ):
                raise ValueError(
                    f"layer {layer.name!r} no longer holds the RGB pixels of its stored result "
                    f"({getattr(data, 'shape', '?')} instead of {(*result.L.shape, 3)}): run Colorize again"
                )
        except ValueError as exc:
            self._enable(False)
            self._status.value = str(exc)
            return
        original = data if applied.is_identity else None
        self._state = BlendState(layer=layer, result=result, applied=applied, original=original)
        self._update_axis_controls(result)
        self.set_params(applied, preview=False)
        self._enable(True)
        self._show_status()

    def _update_axis_controls(self, result: LayerResult) -> None:
        ndim = len(result.stack_shape)
        with self._axis.changed.blocked():
            self._axis.reset_choices()
        self._sigma.visible = ndim >= 1
        self._axis.visible = ndim > 1
        self._apply_button.text = "Apply to whole stack" if ndim else "Apply"

    def _axis_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        state = getattr(self, "_state", None)
        if state is None:
            return [("axis 0", 0)]
        return [
            (_axis_name(state.layer, i), i) for i in range(max(1, len(state.result.stack_shape)))
        ]

    def _stack_ndim(self) -> int:
        return 0 if self._state is None else len(self._state.result.stack_shape)

    # ------------------------------------------------------------------ live preview

    def _on_control_changed(self, _value: Any = None) -> None:
        self.preview()

    def _on_dims(self, _event: Any = None) -> None:
        state = self._state
        if state is None or self.running or not state.result.stack_shape:
            return
        if self.params() != state.applied or self.current_index() in state.previewed:
            self.preview()

    def _enable(self, enabled: bool) -> None:
        for control in (*self._sliders, self._axis, self._apply_button, self._reset_button):
            control.enabled = enabled

    def _show_status(self) -> None:
        state = self._state
        if state is None:
            return
        if state.previewed:
            n = int(np.prod(state.result.stack_shape, dtype=np.int64))
            self._status.value = f"preview on {len(state.previewed)} of {n} planes: Apply to whole stack to render them all"
        elif state.applied.is_identity:
            self._status.value = "showing the model's output"
        else:
            self._status.value = "applied to the whole layer"

"""The Chroma blend widget's work on the chosen layer: rendering planes, Apply over the stack.

:class:`BlendRuns` is a mixin of :class:`~.blend.ChromaBlendWidget`: the widget holds the
sliders and the layer choice; this renders a plane (with
:class:`~napari_chromagan.color.render.PlaneRenderer`), writes it into the widget's own copy of the
layer's pixels, records the settings in the layer's metadata, and runs
:func:`~napari_chromagan.edit.blend.iter_apply_to_stack` in a ``thread_worker`` (why the widget
copies the pixels: see :mod:`.blend`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info

from napari_chromagan.color.render import PlaneRenderer
from napari_chromagan.edit.blend import BlendParams, iter_apply_to_stack, smooth_plane_ab
from napari_chromagan.napari._widgets._common import advance_progress
from napari_chromagan.napari.layer_result import METADATA_KEY, LayerResult
from napari_chromagan.progress import Progress

__all__ = ["BlendRuns", "BlendState"]

log = logging.getLogger(__name__)


@dataclass
class BlendState:
    """What the widget knows about the chosen layer."""

    layer: Any
    result: LayerResult
    applied: BlendParams  # what the whole layer shows (its metadata "blend")
    # the model's own rendering, while the layer still holds it (why: see the module docstring)
    original: np.ndarray | None
    owned: np.ndarray | None = None  # our copy of the pixels, now the layer's data
    previewed: set[tuple[int, ...]] = field(default_factory=set)  # planes showing other settings
    renderer: tuple[tuple[int, ...], PlaneRenderer] | None = None
    smoothed: tuple[tuple[Any, ...], np.ndarray] | None = None


class BlendRuns:
    """Mixin: plane rendering, the layer's pixels and metadata, and Apply, for the blend widget.

    The widget provides the attributes annotated below (its controls and flags) and
    ``_show_status``.
    """

    worker: Any
    _state: BlendState | None
    _running: bool
    _writing: bool
    _pbar: napari_progress | None
    _status: Any
    _layer: Any
    _axis: Any
    _sliders: tuple[Any, ...]
    _apply_button: Any
    _reset_button: Any
    _cancel_button: Any
    running: Any
    _show_status: Any

    # ------------------------------------------------------------ the layer's pixels, metadata

    def _render(self, state: BlendState, params: BlendParams, index: tuple[int, ...]) -> np.ndarray:
        if params.is_identity and state.original is not None:
            return state.original[index]
        result = state.result
        if state.renderer is None or state.renderer[0] != index:
            state.renderer = (index, PlaneRenderer(result.L[index]))
        if params.smooth_sigma > 0:
            key = (index, params.smooth_sigma, params.smooth_axis)
            if state.smoothed is None or state.smoothed[0] != key:
                ab = smooth_plane_ab(result.ab, index, params.smooth_sigma, params.smooth_axis)
                state.smoothed = (key, ab)
            ab = state.smoothed[1]
        else:
            ab = result.ab[index]
        return state.renderer[1].render(ab, params)

    def _write_plane(self, state: BlendState, index: tuple[int, ...], plane: np.ndarray) -> None:
        layer = state.layer
        if state.owned is None or layer.data is not state.owned:
            # never write into an array we did not make (the model output, or the user's)
            self._set_data(state, np.array(layer.data, copy=True))
        state.owned[index] = plane
        layer.refresh(thumbnail=False)

    def _set_data(self, state: BlendState, data: np.ndarray) -> None:
        self._writing = True
        try:
            state.layer.data = data
        finally:
            self._writing = False
        state.owned = data

    def _record(self, state: BlendState, params: BlendParams) -> None:
        """Store ``params`` as the layer's metadata "blend" (what all its planes show)."""
        state.applied = params
        stored = state.layer.metadata.get(METADATA_KEY)
        blend = {} if params.is_identity else params.to_dict()
        if not isinstance(stored, dict) or stored.get("blend") == blend:
            return
        metadata = dict(state.layer.metadata)
        metadata[METADATA_KEY] = {
            **stored,
            "blend": blend,
        }  # shallow: L, ab stay shared, not copied
        self._writing = True
        try:
            state.layer.metadata = metadata
        finally:
            self._writing = False

    # ------------------------------------------------------------------ whole stack

    def _start(self, params: BlendParams) -> Any:
        state = self._state
        if state is None:
            show_info("Chroma blend: choose a colourised layer first.")
            return None
        if self.running:
            show_info("Chroma blend is already rendering: wait for it, or press Cancel.")
            return None
        result = state.result
        planes = int(np.prod(result.stack_shape, dtype=np.int64))
        out = np.empty((*result.L.shape, 3), np.uint8)
        self._pbar = napari_progress(total=planes, desc=f"Chroma blend {state.layer.name}")
        worker = thread_worker(iter_apply_to_stack, start_thread=False)(
            result.L, result.ab, params, out=out
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(lambda _out: self._on_returned(state, params, out))
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_running(True)
        self._status.value = f"rendering {planes} plane(s)…"
        worker.start()
        return worker

    def _on_yielded(self, event: Progress) -> None:
        advance_progress(self._pbar, event.done)

    def _on_returned(self, state: BlendState, params: BlendParams, out: np.ndarray) -> None:
        if state is not self._state:  # another layer was chosen, or this one re-colourised
            return
        self._set_data(state, out)
        self._record(state, params)
        state.previewed.clear()
        self._show_status()

    def _on_errored(self, exc: BaseException) -> None:
        log.error("napari-chromagan: chroma blend failed", exc_info=exc)
        show_error(f"Chroma blend failed ({type(exc).__name__}: {exc}).")

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._set_running(False)
        if self._state is not None and self.worker is not None and self.worker.abort_requested:
            self._status.value = "cancelled: the layer keeps its pixels"

    def _set_running(self, running: bool) -> None:
        self._running = running
        for control in (
            *self._sliders,
            self._axis,
            self._layer,
            self._apply_button,
            self._reset_button,
        ):
            control.enabled = not running and (control is self._layer or self._state is not None)
        self._cancel_button.enabled = running

"""The Colour hints widget's work on its output layer: the debounced preview, Apply, Reset.

:class:`HintRuns` is a mixin of :class:`~.hints.ColorHintsWidget`: the widget holds the
controls and the layer choices, this holds what runs in ``thread_worker`` (the preview of the
plane under the dims slider, Apply over every plane with progress and Cancel) and what writes
into the "<name> hinted" output layer, the widget's own. The maths is
:mod:`napari_chromagan.edit.hints`; this only starts it and puts the pixels in place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info

from napari_chromagan.edit.hints import ColorHints, HintParams, hint_plane, iter_color_hints
from napari_chromagan.errors import ChromaGANError
from napari_chromagan.napari._widgets._common import advance_progress
from napari_chromagan.napari._widgets._hint_layers import (
    base_pixels,
    hinted_metadata,
    preview_plane,
)
from napari_chromagan.napari.layer_result import LayerResult
from napari_chromagan.progress import Progress

__all__ = ["HintRuns", "HintState"]

log = logging.getLogger(__name__)


@dataclass
class HintState:
    """What the widget knows about the chosen colourised layer."""

    layer: Any
    result: LayerResult
    output: Any | None = None  # our "<name> hinted" layer, once made
    previewed: set[tuple[int, ...]] = field(default_factory=set)  # planes showing a preview
    base: np.ndarray | None = None  # the model's rendering (what Reset brings back)


class HintRuns:
    """Mixin: preview, Apply, Reset and the output layer, for :class:`~.hints.ColorHintsWidget`.

    The widget provides the attributes annotated below (its controls and flags) and
    ``read_hints``, ``params``, ``current_index`` and ``_watch``.
    """

    worker: Any
    _viewer: Any
    _state: HintState | None
    _applying: bool
    _previewing: bool
    _again: bool
    _writing: bool
    _pbar: napari_progress | None
    _timer: Any
    _status: Any
    _layer: Any
    _hints: Any
    _sliders: tuple[Any, ...]
    _apply_button: Any
    _reset_button: Any
    _cancel_button: Any
    read_hints: Any
    params: Any
    current_index: Any
    _watch: Any

    # ------------------------------------------------------------------ preview

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
        worker = thread_worker(preview_plane, start_thread=False)(
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

    def _schedule(self, _event: Any = None) -> None:
        if self._state is not None and not self._applying:
            self._timer.start()

    def _on_dims(self, _event: Any = None) -> None:
        state = self._state
        if state is None or not state.result.stack_shape or state.output is None:
            return
        if self.current_index() not in state.previewed:
            self._schedule()

    def _on_preview(
        self, state: HintState, hints: ColorHints, params: HintParams, value: Any
    ) -> None:
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

    def _on_yielded(self, event: Progress) -> None:
        advance_progress(self._pbar, event.done)

    def _on_applied(
        self,
        state: HintState,
        hints: ColorHints,
        params: HintParams,
        ab: np.ndarray,
        rgb: np.ndarray,
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

    # ------------------------------------------------------------------ output layer

    def _make_output(self, state: HintState) -> None:
        state.base = base_pixels(state.layer, state.result)
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
        self, state: HintState, applied: tuple[ColorHints, HintParams, np.ndarray] | None
    ) -> dict[str, Any]:
        existing = {} if state.output is None else state.output.metadata
        return hinted_metadata(state.result, state.layer.name, existing, applied)

    def _write(
        self, state: HintState, data: np.ndarray | None, metadata: dict[str, Any] | None
    ) -> None:
        self._writing = True
        try:
            if data is not None:
                state.output.data = data
            if metadata is not None:
                state.output.metadata = metadata
        finally:
            self._writing = False

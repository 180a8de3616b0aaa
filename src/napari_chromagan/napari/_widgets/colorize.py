"""The Colorize dock widget: pick an image layer, weights and device, run, cancel.

A thin front end to :mod:`napari_chromagan.napari.layers`: the network runs in a ``thread_worker``
that yields progress per batch; the output layer is made or updated on the main thread, in the
``returned`` handler. Expected problems (no weights, an unusable image or device, out of memory,
cancel) become napari notifications that say what to do; nothing raises into the event loop.

The weights list, with its registry downloads and Keras import, is
:class:`~._weights_choice.WeightsChoice`; the worker functions are in :mod:`._workers`.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning

from napari_chromagan.errors import Cancelled, ChromaGANError
from napari_chromagan.napari._widgets._common import advance_progress
from napari_chromagan.napari._widgets._layer_watch import LayerWatcher, refresh_choices
from napari_chromagan.napari._widgets._weights_choice import DEFAULT_WEIGHTS, WeightsChoice
from napari_chromagan.napari._widgets._workers import Failed, ProgressRelay, colorize_work
from napari_chromagan.napari.layers import (
    ColorizeOutput,
    ColorizeRequest,
    Progress,
    add_or_update_layer,
    prepare_request,
)
from napari_chromagan.napari.settings import load_settings, save_settings
from napari_chromagan.weights.lookup import default_weights_note

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["ColorizeWidget"]

log = logging.getLogger(__name__)

SETTINGS_SECTION = "colorize"
# (label, value) of the Network size choices: None runs the weights at their own size
NETWORK_SIZES = [
    ("weights' own", None),
    *((f"{s} px", s) for s in (128, 160, 192, 224, 256, 288, 384)),
]
WHOLE_STACK = "whole stack"
CURRENT_PLANE = "current plane"
_NORMALIZATIONS = [
    ("auto", "auto"),
    ("dtype range", "dtype"),
    ("percentiles", "percentile"),
    ("manual min/max", "manual"),
]


def _available_devices() -> list[str]:
    from napari_chromagan.device import available_devices

    return available_devices()


class ColorizeWidget(LayerWatcher, WeightsChoice, Container):
    """Colourise an image layer with ChromaGAN.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose Image layers are offered, and where the output layer goes.

    Attributes
    ----------
    worker : GeneratorWorker or None
        The last run's worker (tests wait on ``worker.finished``).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self.worker: Any = None
        self._running = False
        self._cancel: threading.Event | None = None
        self._pbar: napari_progress | None = None
        self._relay: ProgressRelay | None = None
        self._extra_weights: list[str] = []
        self._weights_value = DEFAULT_WEIGHTS
        self._restoring = True
        self._build_controls()
        self._restore_settings()
        self._update_normalization_controls()
        self._update_download_button()
        self._restoring = False
        self._connect(viewer)
        self._refresh_layers()
        self._follow_new_weights()  # weights that Fine-tune exports join the list at once

    def _build_controls(self) -> None:
        self._layer = ComboBox(label="Image", choices=self._image_layer_choices)
        self._weights = ComboBox(label="Weights", choices=self._weights_choices)
        self._device = ComboBox(label="Device", choices=_available_devices(), value="auto")
        self._batch = SpinBox(label="Batch size", value=8, min=1, max=256)
        self._network_size = ComboBox(label="Network size", choices=NETWORK_SIZES, value=None)
        self._network_size.tooltip = (
            "The size the network sees (the output is always full size). Smaller: broader, more "
            "saturated colour, faster; larger: finer detail. The authors' model runs at 224 only."
        )
        self._normalization = ComboBox(label="Normalization", choices=_NORMALIZATIONS, value="auto")
        self._p_low = FloatSpinBox(label="Low %", value=0.5, min=0.0, max=100.0, step=0.1)
        self._p_high = FloatSpinBox(label="High %", value=99.5, min=0.0, max=100.0, step=0.1)
        self._v_min = FloatSpinBox(label="Min", min=-1e12, max=1e12, step=1.0)
        self._v_max = FloatSpinBox(label="Max", min=-1e12, max=1e12, step=1.0)
        for control, value in ((self._v_min, 0.0), (self._v_max, 255.0)):
            control.native.setDecimals(6)  # magicgui's 2 decimals cannot hold a float image's range
            control.value = value
        self._scope = RadioButtons(
            label="Scope",
            choices=[WHOLE_STACK, CURRENT_PLANE],
            value=WHOLE_STACK,
            orientation="horizontal",
        )
        self._run_button = PushButton(text="Run")
        self._download_button = PushButton(text="Download", visible=False)
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")
        self._status.native.setWordWrap(True)  # the weights note is a sentence long
        self.extend(
            [
                self._layer,
                self._weights,
                self._device,
                self._batch,
                self._network_size,
                self._normalization,
                self._p_low,
                self._p_high,
                self._v_min,
                self._v_max,
                self._scope,
                Container(
                    widgets=[self._run_button, self._download_button, self._cancel_button],
                    layout="horizontal",
                    labels=False,
                ),
                self._status,
            ]
        )

    def _connect(self, viewer: napari.viewer.Viewer) -> None:
        self._run_button.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        self._download_button.changed.connect(self.download)
        self._weights.changed.connect(self._on_weights_changed)
        self._normalization.changed.connect(self._on_normalization_changed)
        for control in (
            self._device,
            self._batch,
            self._network_size,
            self._p_low,
            self._p_high,
            self._v_min,
            self._v_max,
            self._scope,
        ):
            control.changed.connect(self._save_settings)

        self._watch_viewer(viewer)

    # ------------------------------------------------------------------ layer picker

    def _image_layer_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    _layer_events: tuple[str, ...] = ()  # only names matter here: they label the choices

    def _watches(self, layer: Any) -> bool:
        return isinstance(layer, Image)

    def _refresh_layers(self, _event: Any = None) -> None:
        refresh_choices(self._layer, blocked=False)

    # ------------------------------------------------------------------ normalisation

    def _on_normalization_changed(self, value: str) -> None:
        if value == "manual":
            layer = self._layer.value
            if layer is not None and self._v_min.value == 0.0 and self._v_max.value == 255.0:
                low, high = (float(v) for v in layer.contrast_limits)
                self._v_min.value, self._v_max.value = low, high
        self._update_normalization_controls()
        self._save_settings()

    def _update_normalization_controls(self) -> None:
        mode = self._normalization.value
        for control in (self._p_low, self._p_high):
            control.visible = mode == "percentile"
        for control in (self._v_min, self._v_max):
            control.visible = mode == "manual"

    # ------------------------------------------------------------------ settings

    def _settings(self) -> dict[str, Any]:
        return {
            "device": self._device.value,
            "batch_size": int(self._batch.value),
            "network_size": self._network_size.value,
            "normalization": self._normalization.value,
            "percentiles": [float(self._p_low.value), float(self._p_high.value)],
            "value_range": [float(self._v_min.value), float(self._v_max.value)],
            "scope": self._scope.value,
            "weights": self._weights_path(),
        }

    def _save_settings(self, _value: Any = None) -> None:
        if not self._restoring:
            save_settings(SETTINGS_SECTION, self._settings())

    def _restore_settings(self) -> None:
        saved = load_settings(SETTINGS_SECTION)

        def restore(control: Any, key: str, convert: Any = None) -> None:
            if key not in saved:
                return
            try:
                control.value = saved[key] if convert is None else convert(saved[key])
            except (TypeError, ValueError) as exc:  # an old or hand-edited file
                log.info("ignoring saved colorize setting %s=%r: %s", key, saved[key], exc)

        if saved.get("device") in self._device.choices:
            restore(self._device, "device")
        restore(self._batch, "batch_size", int)
        if saved.get("network_size") in [value for _, value in NETWORK_SIZES]:
            restore(self._network_size, "network_size")
        if saved.get("normalization") in self._normalization.choices:
            restore(self._normalization, "normalization")
        if saved.get("scope") in self._scope.choices:
            restore(self._scope, "scope")
        for key, (low, high) in (
            ("percentiles", (self._p_low, self._p_high)),
            ("value_range", (self._v_min, self._v_max)),
        ):
            values = saved.get(key)
            if isinstance(values, list) and len(values) == 2:
                try:
                    low.value, high.value = float(values[0]), float(values[1])
                except (TypeError, ValueError):
                    pass
        weights = saved.get("weights")
        if isinstance(weights, str) and Path(weights).is_file():
            self._select_weights(weights)
            self._weights_value = weights

    # ------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        """True from :meth:`run` until the run's results are handled on the main thread."""
        return self._running

    def _current_plane(self, layer: Any) -> tuple[int, ...] | None:
        leading = layer.ndim - 2
        if leading <= 0:
            return None
        shape = (layer.data[0] if layer.multiscale else layer.data).shape[:leading]
        position = np.asarray(layer.world_to_data(self._viewer.dims.point), float)[:leading]
        return tuple(int(np.clip(round(p), 0, n - 1)) for p, n in zip(position, shape, strict=True))

    def _options(self) -> dict[str, Any] | None:
        mode = self._normalization.value
        options: dict[str, Any] = {
            "weights": self._weights_path(),
            "device": self._device.value,
            "batch_size": int(self._batch.value),
            "network_size": self._network_size.value,
            "normalization": mode,
            "percentiles": (float(self._p_low.value), float(self._p_high.value)),
            "value_range": None,
            "with_class": True,
        }
        if mode == "percentile" and not options["percentiles"][0] < options["percentiles"][1]:
            show_error("Colorize: the low percentile must be below the high one.")
            return None
        if mode == "manual":
            low, high = float(self._v_min.value), float(self._v_max.value)
            if not low < high:
                show_error("Colorize: the manual minimum must be below the maximum.")
                return None
            options["value_range"] = (low, high)
        return options

    def run(self, _value: Any = None) -> Any:
        """Colourise the chosen layer in a worker thread; return the worker (None if not started)."""
        if self.running:
            show_info("Colorize is already running: wait for it, or press Cancel.")
            return None
        if self._missing_entry() is not None:  # get the weights first; Run again colourises
            return self.download()
        layer = self._layer.value
        if layer is None:
            show_info("Colorize: open or add an image layer first.")
            return None
        options = self._options()
        if options is None:
            return None
        self._save_settings()
        plane = self._current_plane(layer) if self._scope.value == CURRENT_PLANE else None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                request = prepare_request(layer, plane)
        except (TypeError, ValueError) as exc:
            show_error(f"Colorize: {exc}")
            return None
        for warning in caught:
            show_warning(f"Colorize: {warning.message}")

        # Running from here on: making a napari progress bar processes Qt events (a second
        # click on Run must find the widget busy).
        self._running = True
        self._set_running(True)
        self._cancel = cancel = threading.Event()
        # closing the dock widget (or the viewer) stops the run at its next batch
        self.native.destroyed.connect(lambda *_: cancel.set())
        self._status.value = f"colourising {request.source}…"
        self._pbar = napari_progress(total=request.planes, desc=f"Colorize {request.source}")
        worker = thread_worker(colorize_work, start_thread=False)(request, options, cancel)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(lambda value: self._on_returned(request, value))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        return worker

    def cancel(self, _value: Any = None) -> None:
        """Stop the running colourisation (or download) at its next batch; no layer is made."""
        if self._cancel is not None and self.running:
            self._cancel.set()
            self._status.value = "cancelling…"

    def _set_running(self, running: bool, cancellable: bool = True) -> None:
        self._run_button.enabled = not running
        self._download_button.enabled = not running
        self._cancel_button.enabled = running and cancellable

    def _on_yielded(self, event: Progress | str) -> None:
        if isinstance(event, str):
            show_warning(f"Colorize: {event}")
            return
        # Status first: napari's progress bar processes Qt events when it moves, so the later
        # events of this run (even `returned` and `finished`) may be handled inside `update`.
        self._status.value = f"{event.done} / {event.total} planes"
        pbar = self._pbar
        if pbar is None:
            return
        if event.done < pbar.n:  # an out-of-memory retry starts again
            pbar.reset(total=event.total)
        advance_progress(pbar, event.done)

    def _on_returned(self, request: ColorizeRequest, value: ColorizeOutput | Failed) -> None:
        if isinstance(value, Failed):
            self._report(value.error)
            return
        try:
            layer = add_or_update_layer(self._viewer, request, value)
        except Exception as exc:
            log.error("napari-chromagan: adding the colourised layer failed", exc_info=exc)
            self._report(exc)
            return
        weights, size = value.result.weights, (value.provenance or {}).get("network_size")
        self._status.value = (
            f"{layer.name}: {request.planes} plane(s) on {value.result.device} "
            f"in {value.seconds:.1f} s with {Path(weights).name if weights else 'the given model'}"
            + (f" at network size {size}" if size else "")
        )
        if (note := default_weights_note(weights)) is not None:
            self._status.value += f"\n{note[0].upper()}{note[1:]}."

    def _report(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            show_info("Colorize cancelled: no layer was made.")
            self._status.value = "cancelled"
        elif isinstance(exc, (ChromaGANError, MemoryError)):
            show_error(f"Colorize: {exc}")
            self._status.value = "failed (see the notification)"
        else:
            show_error(
                f"Colorize failed ({type(exc).__name__}: {exc}). The traceback is in the log."
            )
            self._status.value = "failed (see the log)"

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._set_running(False)
        self._running = False

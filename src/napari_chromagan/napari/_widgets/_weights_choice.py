"""The Colorize widget's weights choice: the list, its file pickers, registry download and Keras
import.

The list offers the default weights, every entry of :data:`napari_chromagan.weights.registry.REGISTRY`
(a missing one marked "(download)" or "(not installed)"), the checkpoints in the user cache and
the files chosen this session, then two actions. A missing registry entry is downloaded
(``registry.fetch``, in a worker, with a progress bar in bytes) when it is chosen and Run or
Download is pressed; "Import Keras weights…" converts an authors' ``.h5`` into a checkpoint in
the user cache (also in a worker).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from psygnal import Signal

from napari_chromagan.errors import Cancelled, ChromaGANError
from napari_chromagan.napari._widgets._common import advance_progress
from napari_chromagan.napari._widgets._workers import (
    Failed,
    ProgressRelay,
    download_work,
    import_work,
    throttled,
)

__all__ = [
    "CHOOSE_WEIGHTS",
    "DEFAULT_WEIGHTS",
    "IMPORT_KERAS",
    "REGISTRY_PREFIX",
    "WeightsChoice",
    "announce_weights",
]

DEFAULT_WEIGHTS = "default"
CHOOSE_WEIGHTS = "choose"
IMPORT_KERAS = "import-keras"
REGISTRY_PREFIX = "registry:"  # the choice value of a registry entry that is not on this machine


class _WeightsEvents:
    """New weights in the user folder (exported by Fine-tune): every weights list refreshes."""

    added = Signal(str)


_EVENTS = _WeightsEvents()


def announce_weights(path: str | Path) -> None:
    """Tell every open weights list that ``path`` is new (call on the main thread)."""
    _EVENTS.added.emit(str(path))


class WeightsChoice:
    """Mixin: the weights list of the Colorize widget, and the download and import it starts.

    The widget provides the controls (``_weights``, ``_download_button``, ``_status``), the
    choice state (``_extra_weights``, ``_weights_value``), the run state (``worker``,
    ``running``, ``_running``, ``_cancel``, ``_pbar``, ``_relay``) and ``_set_running``,
    ``_on_finished`` and ``_save_settings``: a download or an import is a run of the widget.
    """

    native: Any
    worker: Any
    running: bool
    _weights: Any  # ComboBox
    _download_button: Any  # PushButton
    _status: Any  # Label
    _extra_weights: list[str]  # files chosen this session, offered after the cached ones
    _weights_value: str  # the last real choice (the list goes back to it after an action)
    _running: bool
    _cancel: threading.Event | None
    _pbar: napari_progress | None
    _relay: ProgressRelay | None
    _set_running: Any  # the widget's: enable or disable Run, Download and Cancel
    _on_finished: Any  # the widget's: a worker finished
    _save_settings: Any  # the widget's: save the current choices

    # ------------------------------------------------------------------ the list

    def _follow_new_weights(self) -> None:
        """Refresh the list when :func:`announce_weights` is called (psygnal holds the widget weakly)."""
        _EVENTS.added.connect(self._on_weights_announced)

    def _on_weights_announced(self, _path: str) -> None:
        try:
            self._refresh_weights()
        except RuntimeError:  # the widget's Qt side is gone (its dock was closed)
            _EVENTS.added.disconnect(self._on_weights_announced)

    def _weights_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        from napari_chromagan.errors import WeightsNotFoundError
        from napari_chromagan.weights import registry
        from napari_chromagan.weights.lookup import cached_weights, resolve_weights

        try:
            default = resolve_weights(None)
        except WeightsNotFoundError:
            default = None
        choices = [
            (f"default: {default.name}" if default else "default: none found", DEFAULT_WEIGHTS)
        ]
        seen = {str(default)} if default else set()
        for name, entry in registry.REGISTRY.items():
            path = registry.entry_path(name)
            if path is not None:
                seen.add(str(path))
                choices.append((name, str(path)))
            else:
                missing = "(download)" if entry.urls else "(not installed)"
                choices.append((f"{name} {missing}", REGISTRY_PREFIX + name))
        for path in [*(str(p) for p in cached_weights()), *self._extra_weights]:
            if path not in seen:
                seen.add(path)
                choices.append((Path(path).name, path))
        choices.append(("Choose file…", CHOOSE_WEIGHTS))
        choices.append(("Import Keras weights…", IMPORT_KERAS))
        return choices

    def _ask_weights_file(self) -> str | None:
        """Open a file picker; return the chosen path (None when cancelled)."""
        from qtpy.QtWidgets import QFileDialog

        from napari_chromagan.weights.lookup import user_weights_dir

        folder = user_weights_dir()
        path, _ = QFileDialog.getOpenFileName(
            self.native,
            "Choose ChromaGAN weights",
            str(folder if folder.is_dir() else Path.home()),
            "PyTorch weights (*.pt *.pth);;All files (*)",
        )
        return path or None

    def _ask_keras_file(self) -> str | None:
        """Open a file picker for the authors' Keras .h5; return the path (None when cancelled)."""
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(
            self.native,
            "Import Keras ChromaGAN weights",
            str(Path.home()),
            "Keras weights (*.h5 *.hdf5);;All files (*)",
        )
        return path or None

    def _select_weights(self, path: str) -> None:
        if path not in self._extra_weights:
            self._extra_weights.append(path)
        self._weights.reset_choices()
        self._weights.value = path

    def _refresh_weights(self, select: str | None = None) -> None:
        """Rebuild the weights list (statuses may have changed), then choose ``select``."""
        self._weights.reset_choices()
        values = [value for _, value in self._weights_choices()]
        target = select if select is not None else self._weights_value
        if target in values:
            self._weights.value = target
        self._update_download_button()

    def _on_weights_changed(self, value: str) -> None:
        if value == IMPORT_KERAS:
            self._weights.value = self._weights_value  # the list keeps what was chosen before
            path = self._ask_keras_file()
            if path is not None:
                self.import_keras(path)
            return
        if value == CHOOSE_WEIGHTS:
            path = self._ask_weights_file()
            if path is None:  # back to what was chosen before
                self._weights.value = self._weights_value
                return
            self._select_weights(path)
            return
        self._weights_value = value
        self._update_download_button()
        self._save_settings()

    def _weights_path(self) -> str | None:
        value = self._weights.value
        if value in (DEFAULT_WEIGHTS, CHOOSE_WEIGHTS, IMPORT_KERAS, None) or self._missing_entry():
            return None
        return value

    def _missing_entry(self) -> str | None:
        """The registry name when the chosen weights are a registry entry not on this machine."""
        value = self._weights.value
        if isinstance(value, str) and value.startswith(REGISTRY_PREFIX):
            return value[len(REGISTRY_PREFIX) :]
        return None

    def _update_download_button(self) -> None:
        self._download_button.visible = self._missing_entry() is not None

    # ------------------------------------------------------------------ download

    def download(self, _value: Any = None) -> Any:
        """Download the chosen (missing) registry entry in a worker; return the worker."""
        name = self._missing_entry()
        if name is None:
            return None
        if self.running:
            show_info("Colorize is busy: wait for it, or press Cancel.")
            return None
        self._running = True
        self._set_running(True)
        self._cancel = cancel = threading.Event()
        self.native.destroyed.connect(lambda *_: cancel.set())
        self._status.value = f"downloading {name}…"
        self._pbar = napari_progress(total=0, desc=f"Download {name} (bytes)")
        self._relay = ProgressRelay(self._on_download_progress)
        worker = thread_worker(download_work, start_thread=False)(
            name, throttled(self._relay.progressed.emit), cancel
        )
        worker.returned.connect(lambda value: self._on_downloaded(name, value))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        return worker

    def _on_download_progress(self, done: int, total: int | None) -> None:
        # status first: the progress bar processes Qt events (see ColorizeWidget._on_yielded)
        self._status.value = (
            f"{done / 1e6:.1f} / {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        )
        pbar = self._pbar
        if pbar is None:
            return
        if total and pbar.total != total:
            pbar.total = total
        advance_progress(pbar, done)

    def _on_downloaded(self, name: str, value: Any) -> None:
        if isinstance(value, Failed):
            exc = value.error
            if isinstance(exc, Cancelled):
                show_info(f"Download of {name} cancelled: {exc}")
                self._status.value = "download cancelled (partial file kept)"
            elif isinstance(exc, (ChromaGANError, ImportError, OSError)):
                show_error(f"Downloading {name} failed: {exc}")
                self._status.value = "download failed (see the notification)"
            else:
                show_error(
                    f"Downloading {name} failed ({type(exc).__name__}: {exc}). "
                    "The traceback is in the log."
                )
                self._status.value = "download failed (see the log)"
            self._refresh_weights()
            return
        self._refresh_weights(str(value))
        self._status.value = f"{name} is available: {value}"
        show_info(f"{name} downloaded: {value}. Press Run to colourise with it.")

    # ------------------------------------------------------------------ Keras import

    def import_keras(self, h5: str) -> Any:
        """Convert a Keras .h5 into a checkpoint in the user cache, in a worker; return the worker."""
        if self.running:
            show_info("Colorize is busy: wait for it, or press Cancel.")
            return None
        self._running = True
        self._set_running(True, cancellable=False)
        self._status.value = f"importing {Path(h5).name}…"
        worker = thread_worker(import_work, start_thread=False)(h5)
        worker.returned.connect(lambda value: self._on_imported(h5, value))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        return worker

    def _on_imported(self, h5: str, value: Any) -> None:
        if isinstance(value, Failed):
            exc = value.error
            if isinstance(exc, (ChromaGANError, ImportError, OSError)):
                show_error(f"Importing {Path(h5).name} failed: {exc}")
            else:
                show_error(
                    f"Importing {Path(h5).name} failed ({type(exc).__name__}: {exc}). "
                    "The traceback is in the log."
                )
            self._status.value = "import failed (see the notification)"
            return
        self._refresh_weights(str(value))
        self._status.value = f"imported {Path(h5).name} as {value}"

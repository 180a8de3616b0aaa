"""What the Colorize widget runs off the GUI thread: the ``thread_worker`` functions for
colourising, downloading and importing weights, and the plumbing that brings their progress
back to the main thread.

Every worker returns :class:`Failed` instead of raising: an exception leaving a worker would
reach napari's error dialog, and the widget turns expected problems into notifications.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal, Slot

from napari_chromagan.errors import ChromaGANError
from napari_chromagan.napari.layers import ColorizeRequest, iter_run_request

__all__ = [
    "Failed",
    "ProgressRelay",
    "colorize_work",
    "download_work",
    "import_work",
    "throttled",
]

log = logging.getLogger(__name__)


@dataclass
class Failed:
    """What the worker returns instead of raising (an exception would reach napari's dialog)."""

    error: BaseException


class ProgressRelay(QObject):
    """Carries ``progress(done, total)`` calls from a worker thread to the main thread.

    It is made on the main thread, so the (queued) slot runs there; the callback is called
    from the slot, never from the worker.
    """

    progressed = Signal(object, object)

    def __init__(self, callback: Any) -> None:
        super().__init__()
        self._callback = callback
        self.progressed.connect(self._deliver)

    @Slot(object, object)
    def _deliver(self, done: Any, total: Any) -> None:
        self._callback(done, total)


def throttled(emit: Any, interval: float = 0.1) -> Any:
    """A ``progress(done, total)`` for the worker that passes on at most one call per
    ``interval`` seconds (and always the first and the last one)."""
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        now = time.monotonic()
        if done == 0 or (total is not None and done >= total) or now - last[0] >= interval:
            last[0] = now
            emit(done, total)

    return progress


def download_work(name: str, progress: Any, cancel: threading.Event) -> Any:
    """The download worker: returns the weights file, or Failed."""
    from napari_chromagan.weights import (
        registry,  # looked up at call time: tests replace registry.fetch
    )

    try:
        return registry.fetch(name, progress=progress, cancel=cancel)
    except (ChromaGANError, ImportError, OSError) as exc:
        return Failed(exc)
    except Exception as exc:
        log.error("napari-chromagan: downloading %s failed", name, exc_info=exc)
        return Failed(exc)


def _import_target(h5: str) -> Path:
    """Where an imported Keras file goes in the user cache (never over an existing file)."""
    from napari_chromagan.weights.keras_import import CHECKPOINT_NAME
    from napari_chromagan.weights.lookup import user_weights_dir

    folder = user_weights_dir()
    stem = Path(h5).stem
    # the authors' file becomes the registry's chromagan-imagenet checkpoint
    base = Path(CHECKPOINT_NAME).stem if stem == "my_model_colorization" else stem
    target = folder / f"{base}.pt"
    n = 2
    while target.exists():
        target = folder / f"{base}-{n}.pt"
        n += 1
    return target


def import_work(h5: str) -> Any:
    """The import worker: returns the checkpoint written into the user cache, or Failed."""
    from napari_chromagan.weights import (
        keras_import,  # looked up at call time: tests replace the importer
    )

    try:
        target = _import_target(h5)
        target.parent.mkdir(parents=True, exist_ok=True)
        return keras_import.import_keras_weights_to_checkpoint(h5, target)
    except (ChromaGANError, ImportError, OSError) as exc:
        return Failed(exc)
    except Exception as exc:
        log.error("napari-chromagan: importing %s failed", h5, exc_info=exc)
        return Failed(exc)


def colorize_work(request: ColorizeRequest, options: dict[str, Any], cancel: threading.Event):
    """The worker: yields :class:`Progress` and warning strings, returns the output or Failed."""
    try:
        return (yield from iter_run_request(request, cancel=cancel, **options))
    except (ChromaGANError, MemoryError) as exc:
        return Failed(exc)
    except Exception as exc:
        log.error("napari-chromagan: colourising %r failed", request.source, exc_info=exc)
        return Failed(exc)

"""Following a fine-tuning run from the Fine-tune widget: progress, samples, the end, export.

:class:`RunFollower` is a mixin of :class:`~.finetune.FinetuneWidget`: its timer calls
:meth:`~RunFollower.poll`, which reads the files the trainer writes (through
:class:`training.finetune.FinetuneRun`) into the progress bar, the live plot and the sample
layer; a finished run is exported into the weights folder in a worker. :class:`CloseGuard`
decides what happens to a running run when napari closes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info, show_warning

from napari_chromagan.errors import ChromaGANError
from napari_chromagan.napari._widgets._weights_choice import announce_weights
from napari_chromagan.napari._widgets._workers import Failed

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Image

    from training.finetune import FinetuneRun

__all__ = ["SAMPLE_LAYER", "CloseGuard", "RunFollower", "export_work", "format_duration"]

log = logging.getLogger(__name__)

SAMPLE_LAYER = "Fine-tune samples"


def export_work(run: FinetuneRun, name: str) -> Any:
    """Export a finished run's weights as ``name`` (in a worker): the path, or :class:`Failed`."""
    try:
        return run.export(name)
    except (ChromaGANError, FileExistsError, OSError) as exc:
        return Failed(exc)
    except Exception as exc:
        log.error("napari-chromagan: exporting %s failed", run.out, exc_info=exc)
        return Failed(exc)


class CloseGuard:
    """What happens to a running run when the widget (or napari) closes; holds no widget."""

    def __init__(self) -> None:
        self.run: FinetuneRun | None = None
        self.stop_on_close = True

    def __call__(self, *_args: Any) -> None:
        run = self.run
        if run is None or not run.running:
            return
        if self.stop_on_close:
            run.stop()
            log.warning(
                "napari-chromagan: napari closed; the fine-tuning run in %s checkpoints and stops "
                "(continue it with: python -m training train --out %s --resume latest)",
                run.out,
                run.out,
            )
        else:
            log.warning(
                "napari-chromagan: napari closed; the fine-tuning run in %s keeps going (process %d; "
                "follow %s)",
                run.out,
                run.process.pid,
                run.out / "progress.json",
            )


class RunFollower:
    """Mixin: follow the run's files, show its samples and its end, export its weights.

    The widget provides the attributes annotated below (its controls, the run and its timer)
    and ``_set_buttons``.
    """

    run: FinetuneRun | None
    exported: Path | None
    worker: Any
    plot: Any
    _viewer: Any
    _sample_path: Path | None
    _sample_layer: Image | None
    _timer: Any
    _progress: Any
    _time_left: Any
    _status: Any
    _name: Any
    _export_button: Any
    _start_from: Any
    _set_buttons: Any

    def poll(self) -> None:
        """One look at the run's files (the timer calls this every POLL_MS ms)."""
        run = self.run
        if run is None:
            return
        status = run.poll()
        for row in status.new_rows:
            self.plot.add_row(row)
        progress = status.progress
        if progress:
            total, step = int(progress.get("total") or 1), int(progress.get("step") or 0)
            self._progress.max = max(1, total)
            self._progress.value = min(step, total)
            eta = progress.get("eta_s")
            rate = progress.get("images_per_s")
            self._time_left.value = (
                format_duration(eta)
                if isinstance(eta, (int, float)) and math.isfinite(eta)
                else "measuring…"
            ) + (f" ({rate:.1f} images/s)" if isinstance(rate, (int, float)) else "")
        if status.sample is not None and status.sample != self._sample_path:
            self._show_sample(status.sample)
        if not status.running:
            self._timer.stop()
            self._on_ended(status.returncode, progress)

    def _show_sample(self, path: Path) -> None:
        from PIL import Image as PILImage

        try:
            with PILImage.open(path) as image:
                rgb = np.asarray(image.convert("RGB"))
        except (
            OSError
        ):  # not there any more (checkpoint rotation does not touch samples, but a user may)
            return
        self._sample_path = path
        layer = self._sample_layer
        if layer is not None and any(layer is other for other in self._viewer.layers):
            layer.data = rgb
        else:
            self._sample_layer = self._viewer.add_image(rgb, name=SAMPLE_LAYER, rgb=True)
        self._sample_layer.metadata["finetune_sample"] = str(path)
        self._sample_layer.visible = True

    def _on_ended(self, returncode: int | None, progress: dict | None) -> None:
        from training.finetune import describe_exit

        run = self.run
        text = describe_exit(returncode if returncode is not None else 1, progress, run.log_tail())
        self._set_buttons(running=False)
        if returncode == 0 and run.finished_checkpoint() is not None:
            self._status.value = f"Run {text}; exporting the weights…"
            self.export()
            return
        self._status.value = f"Run {text}."
        if returncode == 130:
            show_info(f"Fine-tune: the run {text}.")
        else:
            show_warning(
                f"Fine-tune: the run {text}. napari is fine; the log is {run.out / 'train.log'}."
            )

    def export(self, _value: Any = None) -> Any:
        """Export the finished run as Save-as.pt into the weights folder (in a worker)."""
        run = self.run
        if run is None or run.finished_checkpoint() is None:
            show_info("Fine-tune: only a finished run can be exported.")
            return None
        name = str(self._name.value)
        self._export_button.enabled = False
        worker = thread_worker(export_work, start_thread=False)(run, name)
        worker.returned.connect(self._on_exported)
        self.worker = worker
        worker.start()
        return worker

    def _on_exported(self, value: Any) -> None:
        if isinstance(value, Failed):
            show_error(f"Fine-tune: exporting failed: {value.error}")
            self._status.value = f"not exported: {value.error}"
            self._export_button.enabled = True
            return
        self.exported = Path(value)
        announce_weights(value)
        self._start_from.reset_choices()
        self._status.value = (
            f"Weights saved as {self.exported.name} in the weights folder; the Colorize widget "
            "lists them now."
        )
        show_info(f"Fine-tune: weights saved as {self.exported}")


def format_duration(seconds: float) -> str:
    """Seconds as "1 h 02 min", "3 min 05 s" or "7 s"."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"

"""The Fine-tune dock widget: train the colouriser on the user's own colour images.

A thin front end to :class:`training.finetune.FinetuneRun`: Start runs ``python -m training
train`` as a separate process (a crash or an out-of-memory there never takes napari down), and a
QTimer follows the files it writes: ``progress.json`` for the progress bar and the time left,
``metrics.jsonl`` for the live plot of the losses and the validation PSNR, ``samples/`` for the
sample layer. Stop sends SIGINT (the trainer checkpoints and exits); Resume continues with
``--resume latest``; when a run finishes its weights are exported into the user weights folder and
appear in the Colorize widget's list. No modal dialogs; expected problems are notifications.

This module holds the controls, Start, Stop and Resume; following the run (and export) is
:mod:`._finetune_follow`, the Start-from choices and the training images from layers are
:mod:`._finetune_sources`.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    RadioButtons,
    Select,
    SpinBox,
)
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from napari_chromagan.device import available_devices
from napari_chromagan.errors import ChromaGANError
from napari_chromagan.napari._widgets._finetune_follow import CloseGuard, RunFollower
from napari_chromagan.napari._widgets._finetune_sources import (
    START_CHOOSE,
    START_COLORIZE,
    START_SCRATCH,
    start_choices,
    start_weights,
    write_layer_images,
)
from napari_chromagan.napari._widgets._layer_watch import LayerWatcher
from napari_chromagan.napari._widgets._plot import LivePlot

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from training.finetune import FinetuneRun

__all__ = ["FinetuneWidget"]

FROM_FOLDER = "a folder"
FROM_LAYERS = "colour layers"
KEEP_GOING = "keep the run going"
STOP_IT = "stop the run"
POLL_MS = 500


class FinetuneWidget(RunFollower, LayerWatcher, Container):
    """Fine-tune ChromaGAN on colour images from a folder or from the viewer's colour layers.

    Attributes
    ----------
    run : FinetuneRun or None
        The current (or last) run.
    exported : Path or None
        The weights file the last finished run was exported to.
    worker : FunctionWorker or None
        The last export's worker.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self.run: FinetuneRun | None = None
        self.exported: Path | None = None
        self.worker: Any = None
        self._sample_path: Path | None = None
        self._sample_layer: Image | None = None
        self._extra_weights: list[str] = []
        self._guard = CloseGuard()
        self._build_training_controls()
        self._build_run_controls()
        self._timer = QTimer(self.native)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)
        self.native.destroyed.connect(self._guard)
        self._connect(viewer)
        self._update_controls()
        self._on_close_changed(self._on_close.value)

    def _build_training_controls(self) -> None:
        """What to train on, from what, and how: the controls above the Run folder."""
        self._source = RadioButtons(
            label="Images from",
            choices=[FROM_FOLDER, FROM_LAYERS],
            value=FROM_FOLDER,
            orientation="horizontal",
        )
        self._folder = FileEdit(label="Folder", mode="d")
        self._layers = Select(label="Layers", choices=self._colour_layer_choices)
        self._held_out = FloatSpinBox(
            label="Held out",
            value=0.1,
            min=0.0,
            max=0.5,
            step=0.05,
            tooltip="the fraction of the images kept for validation (0: none)",
        )
        self._start_from = ComboBox(label="Start from", choices=self._start_choices)
        self._preset = ComboBox(
            label="Preset",
            choices=["chromagan-noclass", "chromanet", "chromagan"],
            value="chromagan-noclass",
            tooltip="chromagan needs an ImageNet teacher; the other two do not",
        )
        self._steps = SpinBox(label="Steps", value=500, min=1, max=10_000_000, step=100)
        self._lr = FloatSpinBox(label="Learning rate", min=1e-7, max=1.0, step=1e-5)
        self._lr.native.setDecimals(7)
        self._lr.value = 5e-5
        self._batch = SpinBox(label="Batch size", value=8, min=1, max=512)
        self._size = SpinBox(
            label="Image size",
            value=128,
            min=32,
            max=1024,
            step=32,
            tooltip="the network's input; weights fix it, so it is set only from scratch",
        )
        self._width = FloatSpinBox(
            label="Width",
            value=0.25,
            min=0.0625,
            max=1.0,
            step=0.0625,
            tooltip="the network's channel width (from scratch only; 1 = the paper)",
        )
        self._width.native.setDecimals(4)
        self._device = ComboBox(label="Device", choices=available_devices(), value="auto")

    def _build_run_controls(self) -> None:
        """Where the run goes, its buttons and what follows it; then the layout of them all."""
        self._out = FileEdit(
            label="Run folder",
            mode="d",
            tooltip="empty: a new folder under the napari-chromagan runs folder",
        )
        self._name = LineEdit(
            label="Save as",
            value="finetuned",
            tooltip="the weights' name in the weights folder (never overwritten)",
        )
        self._on_close = RadioButtons(
            label="When napari closes", choices=[STOP_IT, KEEP_GOING], value=STOP_IT
        )
        self._start_button = PushButton(text="Start")
        self._stop_button = PushButton(text="Stop", enabled=False)
        self._resume_button = PushButton(text="Resume", enabled=False)
        self._export_button = PushButton(text="Export", enabled=False)
        self._progress = ProgressBar(label="Progress", value=0, min=0, max=1)
        self._time_left = Label(label="Time left", value="")
        self.plot = LivePlot()
        self._status = Label(value="")
        self._status.native.setWordWrap(True)
        self.extend([
            self._source, self._folder, self._layers, self._held_out, self._start_from, self._preset,
            self._steps, self._lr, self._batch, self._size, self._width, self._device, self._out, self._name,
            self._on_close,
            Container(widgets=[self._start_button, self._stop_button, self._resume_button, self._export_button],
                      layout="horizontal", labels=False),
            self._progress, self._time_left,
        ])  # fmt: skip
        self.native.layout().addWidget(self.plot)
        self.append(self._status)

    def _connect(self, viewer: napari.viewer.Viewer) -> None:
        self._source.changed.connect(self._update_controls)
        self._start_from.changed.connect(self._on_start_from_changed)
        self._on_close.changed.connect(self._on_close_changed)
        self._out.changed.connect(self._on_out_changed)
        self._start_button.changed.connect(self.start)
        self._stop_button.changed.connect(self.stop)
        self._resume_button.changed.connect(self.resume)
        self._export_button.changed.connect(self.export)
        self._watch_viewer(viewer, moved=False)

    # ------------------------------------------------------------------ choices

    def _colour_layer_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and layer.rgb and layer is not self._sample_layer
        ]

    def _watches(self, layer: Any) -> bool:
        return False  # only the layer list matters: which colour layers there are

    def _refresh_layers(self, _event: Any = None) -> None:
        chosen = list(self._layers.value)
        self._layers.reset_choices()
        available = [layer for _, layer in self._colour_layer_choices()]
        self._layers.value = [layer for layer in chosen if any(layer is a for a in available)]

    def _start_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        return start_choices(self._extra_weights)

    def set_start_weights(self, path: str | Path) -> None:
        """Start the next run from this weights file (what "Choose file…" does)."""
        path = str(path)
        if path not in self._extra_weights:
            self._extra_weights.append(path)
        self._start_from.reset_choices()
        self._start_from.value = path

    def _on_start_from_changed(self, value: str) -> None:
        if value == START_CHOOSE:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getOpenFileName(
                self.native,
                "Start fine-tuning from",
                str(Path.home()),
                "PyTorch weights (*.pt *.pth);;All files (*)",
            )
            if path:
                self.set_start_weights(path)
            else:
                self._start_from.value = START_COLORIZE
            return
        self._update_controls()

    def _update_controls(self, _value: Any = None) -> None:
        layers = self._source.value == FROM_LAYERS
        self._folder.visible = not layers
        self._layers.visible = layers
        scratch = self._start_from.value == START_SCRATCH
        self._size.enabled = self._width.enabled = scratch

    def _on_close_changed(self, value: str) -> None:
        self._guard.stop_on_close = value == STOP_IT

    # ------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.running

    def _settings(self, out: Path, data: Path, init_from: str | None) -> Any:
        from training.finetune import FinetuneSettings

        return FinetuneSettings(
            data=str(data), out=str(out), init_from=init_from, preset=self._preset.value,
            steps=int(self._steps.value), lr=float(self._lr.value), batch_size=int(self._batch.value),
            image_size=int(self._size.value), width=float(self._width.value), device=self._device.value,
            val_fraction=float(self._held_out.value) or None, num_workers=self.num_workers,
        )  # fmt: skip

    num_workers = 1  # data-loading processes of the run (tests use 0)

    def _new_out(self) -> Path:
        from training.finetune import runs_dir

        given = str(self._out.value)
        if given not in ("", "."):
            return Path(given)
        return runs_dir() / datetime.datetime.now().strftime("finetune-%Y%m%d-%H%M%S")

    def start(self, _value: Any = None) -> FinetuneRun | None:
        """Start a new run (in a separate process); return it, or None when it could not start."""
        from training.finetune import IMAGES_FOLDER, FinetuneError, FinetuneRun, weights_image_size
        from training.train import latest_checkpoint

        if self.running:
            show_info("Fine-tune: a run is going; Stop it first.")
            return None
        out = self._new_out()
        if latest_checkpoint(out) is not None:
            show_error(
                f"Fine-tune: {out} already holds a run: press Resume to continue it, or empty the "
                "Run folder field for a new one."
            )
            return None
        try:
            init_from = start_weights(self._start_from.value)
            size = weights_image_size(init_from) if init_from else int(self._size.value)
            if self._source.value == FROM_LAYERS:
                layers = list(self._layers.value)
                if not layers:
                    raise FinetuneError("choose one or more colour layers to train on")
                data = out / IMAGES_FOLDER
                written = write_layer_images(layers, data, tile=2 * size)
                self._status.value = (
                    f"{len(written)} training images written from {len(layers)} layer(s)"
                )
            else:
                data = Path(str(self._folder.value))
                if not data.is_dir() or str(self._folder.value) in ("", "."):
                    raise FinetuneError("choose the folder of colour images to train on")
            settings = self._settings(out, data, init_from)
            run = FinetuneRun(out)
            run.start(settings.argv())
        except (ChromaGANError, OSError) as exc:
            show_error(f"Fine-tune: {exc}")
            return None
        self._begin(
            run, f"training in {out}"
        )  # (the Run folder field stays as it was: Start again makes a new run)
        return run

    def resume(self, _value: Any = None) -> FinetuneRun | None:
        """Continue the run in the Run folder (``--resume latest``), up to Steps."""
        from training.finetune import FinetuneError, FinetuneRun
        from training.train import latest_checkpoint

        if self.running:
            show_info("Fine-tune: the run is going already.")
            return None
        out = self._resume_target()
        if out is None or latest_checkpoint(out) is None:
            show_error(f"Fine-tune: there is no run to resume in {out}: press Start.")
            return None
        run = FinetuneRun(out)
        try:
            run.start(["--out", str(out), "--max-steps", str(int(self._steps.value))], resume=True)
        except (FinetuneError, OSError) as exc:
            show_error(f"Fine-tune: {exc}")
            return None
        self._begin(run, f"resuming {out}")
        return run

    def _resume_target(self) -> Path | None:
        """The Run folder field when it names one, else the last run's folder."""
        given = str(self._out.value)
        if given not in ("", "."):
            return Path(given)
        return self.run.out if self.run is not None else None

    def _begin(self, run: FinetuneRun, message: str) -> None:
        self.run = self._guard.run = run
        self.exported = None
        self.plot.clear()
        for row in run.all_rows():  # a resumed run shows its history
            self.plot.add_row(row)
        self._progress.value = 0
        self._time_left.value = ""
        self._status.value = message + (
            "; it keeps going if napari closes"
            if not self._guard.stop_on_close
            else "; napari closing stops it (with a checkpoint)"
        )
        self._set_buttons(running=True)
        self._timer.start()

    def stop(self, _value: Any = None) -> None:
        """Ask the run to write a checkpoint and stop (SIGINT); the timer reports the end."""
        if self.run is not None and self.run.stop():
            self._status.value = "stopping: the trainer finishes its step and writes a checkpoint…"
            self._stop_button.enabled = False

    def _set_buttons(self, running: bool) -> None:
        self._start_button.enabled = not running
        self._stop_button.enabled = running
        self._resume_button.enabled = not running and self._resumable()
        self._export_button.enabled = (
            not running and self.run is not None and self.run.finished_checkpoint() is not None
        )

    def _resumable(self) -> bool:
        from training.train import latest_checkpoint

        out = self._resume_target()
        return out is not None and latest_checkpoint(out) is not None

    def _on_out_changed(self, _value: Any = None) -> None:
        self._resume_button.enabled = not self.running and self._resumable()

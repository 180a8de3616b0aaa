"""A fine-tuning run as a separate process, for the napari Fine-tune widget (no Qt here).

The widget never trains in napari's process: :class:`FinetuneRun` starts ``python -m training
train`` with :data:`sys.executable`, so that a crash or an out-of-memory in training never takes
napari down and the same run can be continued from a terminal. It follows the run through the
files the trainer writes (``OUT/progress.json``, ``OUT/metrics.jsonl``, ``OUT/samples/``), stops it
with SIGINT (the trainer checkpoints and exits 130), tells how it ended from the exit status
(:class:`training.progress.ExitCode`), and exports the final checkpoint into the user weights
folder, where the plugin lists it.

What a run is made of (its ``train`` flags) is :class:`training.finetune_settings.FinetuneSettings`;
what :meth:`FinetuneRun.poll` finds and how a run ended are in :mod:`training.finetune_status`.

Also here: :func:`write_training_images`, which turns image arrays (napari layers' data) into
the PNG files of a training folder without touching the arrays.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_chromagan.errors import ChromaGANError
from napari_chromagan.files.atomic import atomic_write

from .finetune_settings import FINETUNE_PRESETS, FinetuneSettings
from .finetune_status import LOG_FILE, RunStatus, describe_exit
from .progress import ExitCode, read_progress

__all__ = [
    "FINETUNE_PRESETS",
    "FinetuneError",
    "FinetuneRun",
    "FinetuneSettings",
    "RunStatus",
    "describe_exit",
    "runs_dir",
    "validation_summary",
    "weights_image_size",
    "write_training_images",
]

log = logging.getLogger(__name__)

IMAGES_FOLDER = "training-images"


class FinetuneError(ChromaGANError):
    """A fine-tuning run cannot start or be exported; the message says what to do."""


def runs_dir() -> Path:
    """Where the widget puts its runs: ``runs/`` beside the user weights folder (not created here)."""
    from napari_chromagan.weights.lookup import user_weights_dir

    return user_weights_dir().parent / "runs"


# ------------------------------------------------------------------------------ training images


def _to_uint8(plane: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    if plane.dtype == np.uint8:
        return plane
    if value_range is None:
        if plane.dtype == np.uint16:
            return np.round(plane / 257.0).astype(np.uint8)
        value_range = (0.0, 1.0) if float(np.nanmax(plane)) <= 1.0 else (0.0, 255.0)
    low, high = value_range
    if not high > low:
        raise FinetuneError(
            f"the contrast limits {value_range} are empty: set them in the layer controls"
        )
    scaled = (np.nan_to_num(plane.astype(np.float64), nan=low) - low) * (255.0 / (high - low))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def write_training_images(
    images: list[tuple[str, Any, tuple[float, float] | None]],
    folder: str | os.PathLike[str],
    tile: int,
) -> list[Path]:
    """Write colour images as PNG files in ``folder``, cut into tiles, and return the files.

    Parameters
    ----------
    images : list of (name, array, value_range)
        RGB(A) arrays (..., H, W, 3|4): a single image or a stack (each plane is written); any
        dtype: uint8 as it is, others mapped from ``value_range`` (the layer's contrast limits;
        None: uint16 by /257, floats as 0-1 or 0-255) to 0-255. The arrays are only read.
    folder : path
        A new or empty folder (created).
    tile : int
        Planes larger than ``tile`` on a side are cut into ``tile`` x ``tile`` tiles (the last
        row and column overlapping the previous ones), so that a large microscopy image gives
        many training images instead of one squashed one.

    Raises
    ------
    FinetuneError
        An array that is not colour, or a folder that already holds files.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FinetuneError(f"{folder} already holds files; training images go into a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    written: list[Path] = []
    for index, (name, data, value_range) in enumerate(images):
        array = np.asarray(data)
        if array.ndim < 3 or array.shape[-1] not in (3, 4):
            raise FinetuneError(
                f"{name!r} is not a colour image (shape {array.shape}): fine-tuning learns colour from "
                "RGB images; choose colour layers"
            )
        planes = array.reshape(-1, *array.shape[-3:])
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "layer"
        for p, plane in enumerate(planes):
            rgb = _to_uint8(np.ascontiguousarray(plane[..., :3]), value_range)
            h, w = rgb.shape[:2]
            ys = _starts(h, tile)
            xs = _starts(w, tile)
            for y in ys:
                for x in xs:
                    part = np.ascontiguousarray(rgb[y : y + tile, x : x + tile])
                    path = folder / f"{index:03d}-{stem}-{p:04d}-{y:05d}-{x:05d}.png"
                    image = Image.fromarray(part)
                    atomic_write(path, lambda fh, image=image: image.save(fh, format="PNG"))
                    written.append(path)
    if not written:
        raise FinetuneError("no image to train on: choose at least one colour layer")
    return written


def _starts(length: int, tile: int) -> list[int]:
    """Tile origins along an axis: every ``tile`` pixels, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


# ------------------------------------------------------------------------------ the run


class FinetuneRun:
    """One run folder and the ``python -m training train`` process working in it.

    Parameters
    ----------
    out : path
        The run's folder (``OUT``): config, checkpoints, metrics, progress, samples and the log.
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._metrics_offset = 0
        self._sample: Path | None = None

    # ---------------------------------------------------------------- start and stop

    @property
    def running(self) -> bool:
        return self.process is not None and self.returncode is None and self.process.poll() is None

    def start(
        self, argv: list[str], *, resume: bool = False, env: dict[str, str] | None = None
    ) -> None:
        """Start ``python -m training train ARGV`` (``--resume latest`` added when ``resume``).

        Its output goes to ``OUT/train.log`` (appended). The process gets its own session, so a
        Ctrl-C in napari's terminal does not reach it and it can outlive napari when asked to.
        """
        if self.running:
            raise FinetuneError("this run is still going: stop it first")
        self.out.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "training",
            "train",
            *argv,
            *(["--resume", "latest"] if resume else []),
        ]
        environment = dict(os.environ if env is None else env)
        with (self.out / LOG_FILE).open("ab") as logfile:
            logfile.write(f"\n$ {' '.join(command)}\n".encode())
            logfile.flush()
            kwargs: dict[str, Any] = {}
            if sys.platform == "win32":
                kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
            else:
                kwargs["start_new_session"] = True
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=environment,
                **kwargs,
            )
        self.returncode = None
        log.info("fine-tuning in %s (process %d)", self.out, self.process.pid)

    def stop(self) -> bool:
        """Ask the run to checkpoint and stop (SIGINT); False when it was not running."""
        if not self.running:
            return False
        if sys.platform == "win32":
            self.process.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            self.process.send_signal(signal.SIGINT)
        return True

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to end (None if it has not within ``timeout`` s)."""
        if self.process is None:
            return self.returncode
        try:
            self.returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    # ---------------------------------------------------------------- following

    def poll(self) -> RunStatus:
        """The process's state, the run's progress file, the metric rows written since the last
        poll and the newest sample image. Cheap: meant for a timer."""
        if self.process is not None and self.returncode is None:
            self.returncode = self.process.poll()
        rows = self._read_new_rows()
        return RunStatus(
            running=self.process is not None and self.returncode is None,
            returncode=self.returncode,
            progress=read_progress(self.out),
            new_rows=rows,
            sample=self._newest_sample(),
        )

    def all_rows(self) -> list[dict[str, Any]]:
        """Every complete row of ``metrics.jsonl`` (and the next :meth:`poll` starts after them)."""
        self._metrics_offset = 0
        return self._read_new_rows()

    def _read_new_rows(self) -> list[dict[str, Any]]:
        path = self.out / "metrics.jsonl"
        try:
            with path.open("rb") as f:
                if f.seek(0, os.SEEK_END) < self._metrics_offset:  # rewritten (a resume trims it)
                    self._metrics_offset = 0
                f.seek(self._metrics_offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        rows = []
        for line in data[:end].splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "step" in row:
                rows.append(row)
        self._metrics_offset += end
        return rows

    def _newest_sample(self) -> Path | None:
        folder = self.out / "samples"
        try:
            names = [
                e.name
                for e in os.scandir(folder)
                if e.name.startswith("step-") and e.name.endswith(".png")
            ]
        except OSError:
            return None
        return folder / max(names) if names else None

    def log_tail(self, size: int = 4000) -> str:
        """The end of ``OUT/train.log``."""
        try:
            with (self.out / LOG_FILE).open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - size))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ---------------------------------------------------------------- results

    def finished_checkpoint(self) -> Path | None:
        """The final checkpoint of a run that finished (exit status 0 and progress "finished"), else None.

        A stopped, failed or killed run offers nothing to export: its weights are not the end of
        the run that was asked for.
        """
        progress = read_progress(self.out)
        if (
            self.returncode != ExitCode.FINISHED
            or not progress
            or progress.get("state") != "finished"
        ):
            return None
        checkpoint = progress.get("checkpoint")
        if not checkpoint or not Path(checkpoint).is_file():
            return None
        return Path(checkpoint)

    def export(self, name: str, folder: str | os.PathLike[str] | None = None) -> Path:
        """Export the finished run's generator as ``NAME.pt`` into the user weights folder.

        The metadata keeps the training record and, as its evaluation, the last validation
        (:func:`validation_summary`). Never overwrites: an existing file raises FileExistsError.
        """
        from napari_chromagan.weights.lookup import user_weights_dir

        from .export import export

        checkpoint = self.finished_checkpoint()
        if checkpoint is None:
            raise FinetuneError(
                "only a finished run is exported: this one is not (Resume it to the end first)"
            )
        clean = name.strip()
        if not clean or any(c in clean for c in '/\\:*?"<>|') or clean.startswith("."):
            raise FinetuneError(
                f"{name!r} is not usable as a file name: use letters, digits, - and _"
            )
        target = Path(folder) if folder is not None else user_weights_dir()
        path = target / (clean if clean.endswith(".pt") else clean + ".pt")
        if path.exists():
            raise FileExistsError(
                f"{path} already exists: choose another name (nothing was overwritten)"
            )
        target.mkdir(parents=True, exist_ok=True)
        summary = validation_summary(self.all_rows(), read_progress(self.out))
        extra = {"label": f"fine-tuned in napari ({self.out.name})"}
        return export(checkpoint, path, evaluation=summary, extra=extra)


def weights_image_size(path: str | os.PathLike[str]) -> int:
    """The network input size a napari-chromagan checkpoint was built for (its ``model_config``),
    read without loading the weights into memory."""
    import torch

    from napari_chromagan.errors import CheckpointError

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(payload["model_config"]["image_size"])
    except Exception as exc:  # not a checkpoint: load_checkpoint says why, in detail, at the start
        raise CheckpointError(
            f"{path} is not a napari-chromagan checkpoint ({type(exc).__name__})"
        ) from None


def validation_summary(
    rows: list[dict[str, Any]], progress: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The run's last validation, shaped like ``evaluate``'s summary (None without validation)."""
    val = [row for row in rows if "val_psnr" in row]
    if not val:
        return None
    last, first = val[-1], val[0]
    return {
        "source": "validation during training (held-out images, the authors' protocol at the network size)",
        "step": last["step"],
        "images": last.get("val_images"),
        "metrics": {
            "psnr": {
                "model": last["val_psnr"],
                "floor": last.get("val_psnr_floor"),
                "first_validation": first["val_psnr"],
                "first_step": first["step"],
            },
            "colourfulness": {
                "model": last["val_colourfulness"],
                "truth": last.get("val_colourfulness_truth"),
                "first_validation": first["val_colourfulness"],
            },
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }

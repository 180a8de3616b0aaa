"""How a run tells others where it is: ``OUT/progress.json`` and the exit codes of ``train``.

``progress.json`` is rewritten atomically (a temporary file renamed over it) at the start, at
every log step, validation and checkpoint, and when the run ends, so a reader never sees half a
file. It holds::

    {"state": "running" | "stopped" | "finished" | "failed",
     "step": 120, "total": 500, "steps_per_s": 1.9, "images_per_s": 15.2, "eta_s": 198.0,
     "losses": {"loss_g": ..., "mse": ..., ...},      # the last logged window's means
     "val": {"val_psnr": ..., "val_colourfulness": ..., ...} | null,
     "checkpoint": "/abs/OUT/checkpoints/step-00000100.pt" | null,
     "message": "..." | null,                         # why it stopped or failed
     "pid": 1234, "started": 1764620000.0, "updated": 1764620063.2}

A process killed from outside (SIGKILL, the machine's out-of-memory killer) cannot write its
last state: its file still says "running". Whoever started it knows it from the exit status;
anyone else can compare ``pid`` with the running processes.
"""

from __future__ import annotations

import json
import math
import os
import time
from enum import IntEnum
from pathlib import Path
from typing import Any

from napari_chromagan.files.atomic import atomic_write_text

__all__ = [
    "EXIT_CODES_HELP",
    "PROGRESS_FILE",
    "STATES",
    "ExitCode",
    "ProgressWriter",
    "read_progress",
]

PROGRESS_FILE = "progress.json"
STATES = ("running", "stopped", "finished", "failed")


class ExitCode(IntEnum):
    """The exit status of ``python -m training train``, one per way a run ends."""

    FINISHED = 0  # all steps done, final checkpoint written
    CRASHED = 1  # an unexpected error (a bug): Python's traceback is on stderr
    BAD_CONFIG = 2  # refused before training: a setting, a file or a folder; nothing was trained
    FAILED = 3  # training started and had to stop: diverged, or no usable batch in a whole epoch
    OUT_OF_MEMORY = 4  # the device or the host ran out of memory
    STOPPED = 130  # SIGINT (Ctrl-C) or SIGTERM: a checkpoint of the last step was written first


EXIT_CODES_HELP = (
    "exit status: 0 finished (final checkpoint written); 130 stopped by Ctrl-C or SIGTERM after "
    "writing a checkpoint (continue with --resume latest; a second Ctrl-C stops at once, still 130, "
    "and the previous checkpoint is the newest); 2 refused before training (a setting, a file or a "
    "folder; the message says which); 3 training failed after it started (diverged, or a whole epoch "
    "without a usable image); 4 out of memory (lower --batch-size or --image-size); 1 an unexpected "
    "error, with a traceback. A run killed from outside (SIGKILL) leaves OUT/progress.json saying "
    "'running'; its newest checkpoint is complete (they are written atomically)."
)


def _finite(value: Any) -> Any:
    """JSON has no NaN or inf: such values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ProgressWriter:
    """Keeps ``OUT/progress.json`` up to date for one process's part of a run.

    Parameters
    ----------
    out : path
        The run's folder.
    total : int
        The step the run ends at.
    step : int
        The step this process starts (or resumes) at; the rate and the time left are measured
        from here.
    """

    def __init__(self, out: str | os.PathLike[str], total: int, step: int) -> None:
        self.path = Path(out) / PROGRESS_FILE
        self.total = int(total)
        self.start_step = int(step)
        self.start_time = time.time()
        self._start_clock = time.perf_counter()
        self.values: dict[str, Any] = {
            "state": "running", "step": int(step), "total": self.total, "steps_per_s": None,
            "images_per_s": None, "eta_s": None, "losses": {}, "val": None, "checkpoint": None,
            "message": None, "pid": os.getpid(), "started": self.start_time,
        }  # fmt: skip

    def update(
        self,
        step: int,
        *,
        losses: dict[str, float] | None = None,
        images_per_s: float | None = None,
        val: dict[str, float] | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        state: str = "running",
        message: str | None = None,
    ) -> None:
        """Record what changed and rewrite the file."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        v = self.values
        v["step"], v["state"] = int(step), state
        elapsed = time.perf_counter() - self._start_clock
        done = step - self.start_step
        if done > 0 and elapsed > 0:
            v["steps_per_s"] = done / elapsed
            v["eta_s"] = max(0.0, (self.total - step) / v["steps_per_s"])
        if state != "running":
            v["eta_s"] = 0.0 if state == "finished" else None
        if losses is not None:
            v["losses"] = {k: _finite(float(x)) for k, x in losses.items()}
        if images_per_s is not None:
            v["images_per_s"] = _finite(float(images_per_s))
        if val is not None:
            v["val"] = {k: _finite(x) for k, x in val.items()}
        if checkpoint is not None:
            v["checkpoint"] = str(checkpoint)
        if message is not None:
            v["message"] = message
        v["updated"] = time.time()
        atomic_write_text(self.path, json.dumps(v, indent=1, sort_keys=True) + "\n")


def read_progress(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``OUT/progress.json`` as a dict, or None when there is none yet (or it cannot be read)."""
    try:
        values = json.loads((Path(out) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return values if isinstance(values, dict) else None

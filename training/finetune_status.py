"""How a fine-tuning run is going (:class:`RunStatus`) and how it ended (:func:`describe_exit`,
from the trainer's exit status, :class:`training.progress.ExitCode`)."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import ExitCode

__all__ = ["LOG_FILE", "RunStatus", "describe_exit"]

LOG_FILE = "train.log"  # the run's output, in its folder


@dataclass
class RunStatus:
    """What :meth:`FinetuneRun.poll` found."""

    running: bool
    returncode: int | None
    progress: dict[str, Any] | None
    new_rows: list[dict[str, Any]]
    sample: Path | None  # the newest sample image


def describe_exit(returncode: int, progress: dict[str, Any] | None, log_tail: str = "") -> str:
    """One sentence on how a run ended, from its exit status and its last progress."""
    step = progress.get("step") if progress else None
    at = f" at step {step}" if step is not None else ""
    checkpoint = progress.get("checkpoint") if progress else None
    newest = f"; its newest checkpoint is {Path(checkpoint).name}" if checkpoint else ""
    error = next(
        (
            line[len("error: ") :]
            for line in reversed(log_tail.splitlines())
            if line.startswith("error: ")
        ),
        "",
    )
    if returncode == ExitCode.FINISHED:
        return f"finished{at}"
    if returncode == ExitCode.STOPPED:
        return f"stopped{at}{newest}: Resume continues it"
    if returncode == ExitCode.BAD_CONFIG:
        return f"refused before training: {error or 'see ' + LOG_FILE}"
    if returncode == ExitCode.FAILED:
        return f"failed{at}: {error or 'see ' + LOG_FILE}"
    if returncode == ExitCode.OUT_OF_MEMORY:
        return f"ran out of memory{at}: lower the batch size or the image size{newest}"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        after = (
            f"; its newest checkpoint, {Path(checkpoint).name}, is complete (checkpoints are written whole): "
            "Resume continues from it"
            if checkpoint
            else "; it had written no checkpoint yet: Start again"
        )
        return f"the training process was killed ({name}){at}; nothing was exported{after}"
    return f"crashed (exit status {returncode}){at}: the traceback is in {LOG_FILE}{newest}"

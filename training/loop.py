"""The run loop: epochs of batches, one train step each, until the last step or a stop request.

Every rank runs it; rank 0 alone records (:class:`training.monitor.RunLog`). A stop request
(SIGINT/SIGTERM) ends the run after the current step with a checkpoint, from which
``--resume latest`` continues exactly.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import distributed
from .checkpoints import latest_checkpoint
from .data import Batch, batch_to_lab, make_loader
from .monitor import RunLog

if TYPE_CHECKING:
    from .train import Trainer

__all__ = ["StopRequest", "TrainResult", "TrainingError", "run"]

log = logging.getLogger("training")


class TrainingError(RuntimeError):
    """Training had to stop; the message says why and what to do."""


@dataclass
class TrainResult:
    checkpoint: Path | None
    step: int
    interrupted: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints after the current step and exits."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if hasattr(signal, "SIGTERM"):
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except ValueError:  # not the main thread: leave the handlers alone
                    pass
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum
        log.warning(
            "received %s: finishing this step, writing a checkpoint, then stopping",
            signal.Signals(signum).name,
        )

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run(trainer: Trainer, stop: StopRequest) -> TrainResult:
    """Train to ``trainer.total_steps`` or until ``stop``; the last step is always checkpointed."""
    main = trainer.info.is_main
    loop = _Loop(trainer, stop, RunLog(trainer) if main else None)
    try:
        while trainer.step < trainer.total_steps and not loop.interrupted:
            loop.epoch()
        if loop.last_saved != trainer.step:
            loop.save()
    finally:
        if loop.record is not None:
            loop.record.close()
    skipped = trainer.totals.get("unreadable", 0)
    if main and skipped:
        log.warning("%d unreadable images were skipped (see the warnings above for which)", skipped)
    return TrainResult(
        latest_checkpoint(trainer.out) if main else None,
        trainer.step,
        loop.interrupted,
        trainer.history,
    )


class _Loop:
    """The state of one :func:`run`: whether it was stopped, and the step last checkpointed."""

    def __init__(self, trainer: Trainer, stop: StopRequest, record: RunLog | None) -> None:
        self.trainer, self.stop, self.record = trainer, stop, record
        self.interrupted = False
        self.last_saved = -1

    def epoch(self) -> None:
        """The rest of this epoch's batches: to its end, to the last step, or to a stop request."""
        trainer = self.trainer
        steps_before, started_at = trainer.step, trainer.position
        for batch in _epoch_loader(trainer):
            n = int(batch.rgb.shape[0])
            # one collective per batch carries both flags: a stop asked for on any process
            # (a signal during the last step), and a batch with no readable image anywhere
            any_empty, stop_now = distributed.all_reduce_flags(
                [float(n == 0), float(self.stop.signal is not None)], trainer.info
            )
            if stop_now:  # this batch is not consumed: a resumed run starts with it
                self.interrupted = True
                return
            _count_batch(trainer, batch)
            if any_empty:
                log.warning("a batch had no readable image on some process: step skipped")
                continue
            L, ab, rgb = _to_device(trainer, batch)
            values = trainer.train_step(L, ab, rgb)
            if values is None:
                _skip_nonfinite(trainer)
                continue
            self.after_step(values, n)
            if trainer.step >= trainer.total_steps:
                return
        if steps_before == trainer.step and started_at == 0:
            raise TrainingError(
                f"a whole epoch of {trainer.config.data} gave no usable batch: the images are unreadable "
                "(or all grayscale with --grayscale skip); see the warnings above"
            )
        trainer.epoch += 1
        trainer.position = 0

    def after_step(self, values: dict[str, float], n: int) -> None:
        """Count the step, record it (rank 0), and checkpoint when it is time."""
        trainer, config = self.trainer, self.trainer.config
        trainer.nonfinite_in_row = 0
        if trainer.average is not None:
            trainer.average.update(trainer.bare_generator)
        trainer.step += 1
        images = n * trainer.info.world_size
        trainer.totals["images"] += images
        trainer.history.append({"step": trainer.step, **values})
        if self.record is not None:
            self.record.after_step(values, images)
        if trainer.step % config.checkpoint_every == 0 or trainer.step >= trainer.total_steps:
            self.save()
            self.last_saved = trainer.step

    def save(self) -> None:
        saved = self.trainer.save()
        if self.trainer.progress is not None:
            self.trainer.progress.update(self.trainer.step, checkpoint=saved)


def _epoch_loader(trainer: Trainer) -> torch.utils.data.DataLoader:
    """This epoch's batches from where the run stands in it (``trainer.position``)."""
    trainer.sampler.set_epoch(trainer.epoch)
    trainer.dataset.set_epoch(trainer.epoch)
    trainer.sampler.set_start(trainer.position)
    return make_loader(
        trainer.dataset,
        trainer.sampler,
        trainer.config.batch_size,
        num_workers=trainer.config.num_workers,
        pin_memory=trainer.device.type == "cuda",
        drop_last=True,
    )


def _count_batch(trainer: Trainer, batch: Batch) -> None:
    """Move the position in the epoch past ``batch`` and add its skipped and gray images."""
    trainer.position += int(batch.indices.numel()) + sum(batch.skipped.values())
    for reason, count in batch.skipped.items():
        trainer.totals[reason] = trainer.totals.get(reason, 0) + count
    trainer.totals["grayscale"] += batch.grayscale


def _to_device(trainer: Trainer, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, ab, rgb) of ``batch`` on the trainer's device, L and ab in its memory format."""
    rgb = batch.rgb.to(trainer.device, non_blocking=True)
    L, ab = batch_to_lab(rgb)
    L = L.contiguous(memory_format=trainer.memory_format)
    ab = ab.contiguous(memory_format=trainer.memory_format)
    return L, ab, rgb


def _skip_nonfinite(trainer: Trainer) -> None:
    """Count a skipped step; too many in a row mean the run diverged."""
    trainer.nonfinite_in_row += 1
    trainer.totals["nonfinite"] += 1
    log.warning(
        "non-finite generator loss at step %d: step skipped (%d in a row)",
        trainer.step,
        trainer.nonfinite_in_row,
    )
    if trainer.nonfinite_in_row >= trainer.config.max_nonfinite:
        raise TrainingError(
            f"{trainer.nonfinite_in_row} non-finite losses in a row at step {trainer.step}: training "
            "diverged. Lower --lr, try --amp off, or resume from an earlier checkpoint."
        )

"""A run's checkpoints: finding them on disk, writing one, and resuming from one exactly.

Every checkpoint holds what an exact resume needs: both networks, both optimizers, the grad
scaler, step, epoch, the position in the epoch's data order and every rank's RNG state. With
``--ema-decay`` the checkpoint's generator is the weights' moving average (what inference uses)
and the training state holds the trained weights (:mod:`training.averaging`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from napari_chromagan.errors import CheckpointError
from napari_chromagan.weights.checkpoint import load_checkpoint, save_checkpoint

from .config import ConfigError, TrainConfig

if TYPE_CHECKING:
    from .train import Trainer

__all__ = ["checkpoint_files", "latest_checkpoint", "load", "save", "training_state"]

log = logging.getLogger("training")
_CKPT_RE = re.compile(r"^step-(\d{8,})\.pt$")
# what a resumed run must share with the run it continues
_MUST_MATCH = (
    "width",
    "image_size",
    "preset",
    "lambda_g",
    "lambda_s",
    "batch_size",
    "seed",
    "resize",
    "grayscale",
    "n_critic",
    "gp_weight",
    "ema_decay",
)


def checkpoint_files(out: str | os.PathLike[str]) -> list[Path]:
    """The run's checkpoints, oldest first."""
    folder = Path(out) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out: str | os.PathLike[str]) -> Path | None:
    files = checkpoint_files(out)
    return files[-1] if files else None


def training_state(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint's ``training`` part; every rank takes part (its RNG state is gathered)."""
    rng = trainer.eps_generator.get_state().cpu()
    if trainer.info.distributed:
        gathered: list[Any] = [None] * trainer.info.world_size
        dist.all_gather_object(gathered, rng)
    else:
        gathered = [rng]
    return {
        "config": trainer.config.to_dict(),
        "critic": None if trainer.critic is None else trainer.bare_critic.state_dict(),
        "optimizer_generator": trainer.opt_g.state_dict(),
        "optimizer_critic": None if trainer.opt_d is None else trainer.opt_d.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "step": trainer.step,
        "epoch": trainer.epoch,
        "position": trainer.position,
        "world_size": trainer.info.world_size,
        "rng_epsilon": gathered,
        "totals": dict(trainer.totals),
        "nonfinite_in_row": trainer.nonfinite_in_row,
        # with --ema-decay the checkpoint's generator is the average; these are the trained weights
        **(
            {}
            if trainer.average is None
            else {
                "generator_trained": trainer.bare_generator.state_dict(),
                "ema_updates": trainer.average.updates,
            }
        ),
    }


def save(trainer: Trainer) -> Path | None:
    """Write a checkpoint (every rank takes part in gathering RNG states; rank 0 writes)."""
    state = training_state(trainer)
    if not trainer.info.is_main:
        return None
    folder = trainer.out / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(
        folder / f"step-{trainer.step:08d}.pt",
        trainer.inference_generator,
        trainer.metadata(),
        state,
    )
    for old in checkpoint_files(trainer.out)[: -trainer.config.keep_checkpoints]:
        old.unlink(missing_ok=True)
    log.info("checkpoint written: %s", path)
    return path


def load(trainer: Trainer, path: Path) -> None:
    """Continue the run saved in ``path``: weights, optimizers, counters and data order."""
    ckpt = load_checkpoint(path)
    state = ckpt.training
    if not state:
        raise CheckpointError(
            f"{path} is an inference checkpoint without training state; it cannot be resumed"
        )
    saved = _check_same_run(path, state, trainer.config)
    if trainer.average is None:
        trainer.bare_generator.load_state_dict(ckpt.generator.state_dict())
    else:
        trainer.bare_generator.load_state_dict(state["generator_trained"])
        trainer.average.average.load_state_dict(ckpt.generator.state_dict())
        trainer.average.updates = int(state["ema_updates"])
    if trainer.critic is not None:
        trainer.bare_critic.load_state_dict(state["critic"])
        trainer.opt_d.load_state_dict(state["optimizer_critic"])
    trainer.opt_g.load_state_dict(state["optimizer_generator"])
    _apply_optimizer_settings(trainer, path, saved)
    trainer.scaler.load_state_dict(state["scaler"])
    trainer.fine_tuned_from = ckpt.metadata.get("fine_tuned_from")
    trainer.step, trainer.epoch, trainer.position = (
        int(state["step"]),
        int(state["epoch"]),
        int(state["position"]),
    )
    trainer.totals.update(state.get("totals", {}))
    trainer.nonfinite_in_row = int(state.get("nonfinite_in_row", 0))
    _restore_rng(trainer, state)
    log.info("resumed from %s at step %d (epoch %d)", path, trainer.step, trainer.epoch)


def _apply_optimizer_settings(trainer: Trainer, path: Path, saved: TrainConfig) -> None:
    """The resumed run's Adam settings are this run's: ``load_state_dict`` restores the saved
    learning rate, betas and eps, which would silently ignore a ``--lr`` given on resume
    (lowering the rate to continue a run is common); the moments are kept. What the run had is
    read from its configuration (mid ``--lr-warmup`` the saved rate is a ramp's)."""
    wanted, had = trainer.config.adam_settings(), saved.adam_settings()
    for optimizer in (trainer.opt_g, trainer.opt_d):
        for group in [] if optimizer is None else optimizer.param_groups:
            group.update(wanted)
    for key, value in wanted.items():
        if _plain(had[key]) != _plain(value):
            log.info("resuming %s with %s %s (the run had %s)", path.name, key, value, had[key])


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _check_same_run(path: Path, state: dict[str, Any], config: TrainConfig) -> TrainConfig:
    """The configuration ``path`` was trained with, when this run may continue it."""
    saved = TrainConfig.from_dict({k: v for k, v in state["config"].items() if k != "effective"})
    for name in _MUST_MATCH:
        if getattr(saved, name) != getattr(config, name):
            raise ConfigError(
                f"cannot resume {path}: it was trained with {name}={getattr(saved, name)!r} but this run "
                f"asks for {getattr(config, name)!r}; drop the flag or start a new --out"
            )
    return saved


def _restore_rng(trainer: Trainer, state: dict[str, Any]) -> None:
    """This rank's RNG state; on another number of processes, a fresh epoch instead."""
    rank = trainer.info.rank
    if int(state.get("world_size", 1)) == trainer.info.world_size:
        trainer.eps_generator.set_state(state["rng_epsilon"][rank])
        return
    log.warning(
        "resuming on %d processes a run saved on %d: the data order restarts at the epoch boundary",
        trainer.info.world_size,
        state.get("world_size"),
    )
    trainer.eps_generator.manual_seed(trainer.config.seed * 1000 + rank + 1 + trainer.step)
    trainer.position = 0
    trainer.epoch += 1

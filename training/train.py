"""Training ChromaGAN: :class:`Trainer` builds a run, :func:`train` runs (or resumes) it.

One process per device under torchrun (or a single process). Rank 0 alone logs, shows progress,
writes samples and checkpoints. Every checkpoint holds what an exact resume needs (see
:mod:`training.checkpoints`); on the CPU a resumed run reproduces an uninterrupted one loss for loss.

Where the pieces live: the train step (a generator step then ``n_critic`` critic steps on the
same batch) in :mod:`training.step`, the loop over epochs in :mod:`training.loop`, what rank 0
records in :mod:`training.monitor`, checkpoints in :mod:`training.checkpoints`, the output
folder in :mod:`training.run_folder` and the starting weights in :mod:`training.init_weights`.

Where this departs from the authors (docs/model.md, "Training schedule"), on purpose:

* the generator and critic have their own Adam optimizers. The authors passed one Keras Adam
  instance to both compiled models, so its step counter advanced twice per iteration and the two
  networks shared bias-correction time; that was an accident of Keras, not a design.
* data is shuffled with a seed (the authors read files in ``os.listdir`` order, unshuffled);
* the teacher sees ImageNet-normalised input unless ``--teacher-input raw`` (see teacher.py).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_chromagan import __version__
from napari_chromagan.model.generator import Critic, Generator

from . import checkpoints, distributed, loop, step
from .averaging import WeightAverage
from .checkpoints import checkpoint_files, latest_checkpoint
from .config import ConfigError, TrainConfig
from .data import ColorizationDataset, ResumableSampler, find_images
from .images import split_validation
from .init_weights import init_from_checkpoint, init_trunk, init_weights_path
from .loop import StopRequest, TrainingError, TrainResult
from .progress import ProgressWriter
from .run_folder import (
    VALIDATION_LIST,
    absolute_paths,
    clean_interrupted_writes,
    prepare_output,
    trim_metrics,
    write_run_files,
)
from .steptimer import StepTimer

__all__ = [
    "VALIDATION_LIST",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "absolute_paths",
    "checkpoint_files",
    "init_weights_path",
    "latest_checkpoint",
    "prepare_output",
    "split_validation",
    "train",
]

log = logging.getLogger("training")


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.amp == "off" or (config.amp == "auto" and device.type != "cuda"):
        return None
    if config.amp == "fp16":
        return torch.float16
    return torch.bfloat16


def _unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "module", module)  # DDP
    return getattr(module, "_orig_mod", module)  # torch.compile


class Trainer:
    """Everything one run trains with: networks, optimizers, teacher, data and counters."""

    def __init__(
        self, config: TrainConfig, info: distributed.DistInfo, resuming: bool = False
    ) -> None:
        self.config = config
        self.info = info
        self.device = info.device
        self.out = Path(config.out)
        self.amp_dtype = _amp_dtype(config, self.device)
        self.autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        self.step = 0
        self.epoch = 0
        self.position = 0  # samples of this rank's shard already consumed in the current epoch
        self.nonfinite_in_row = 0
        self.totals = {
            "unreadable": 0,
            "skipped-grayscale": 0,
            "grayscale": 0,
            "images": 0,
            "nonfinite": 0,
        }
        self.history: list[dict[str, float]] = []
        self.timer: StepTimer | None = None  # set by bench/bench_train.py to time the step's phases
        self.fine_tuned_from: dict[str, Any] | None = None  # what --init-from started from
        self.progress: ProgressWriter | None = None  # rank 0's OUT/progress.json, made by run()

        self._build_networks(resuming)
        self.teacher = self._load_teacher()
        self._to_device()
        # after --init-from and the move to the device: the average starts at the initial weights
        self.average = WeightAverage(self.generator, config.ema_decay) if config.ema_decay else None
        self._build_optimizers()
        self._find_data()

    # ----------------------------------------------------------------- building

    def _build_networks(self, resuming: bool) -> None:
        config = self.config
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.generator = Generator(config.model_config())
        init_trunk(self.generator, config, resuming)
        if not config.uses_class_loss:
            # nothing trains the class head: freeze it, so DDP and the optimizer ignore it
            self.generator.class_head.requires_grad_(False)
        self.critic = Critic(config.critic_config()) if config.uses_critic else None
        if config.init_from and not resuming:  # a resume loads its own weights
            self.fine_tuned_from = init_from_checkpoint(
                self.generator, self.critic, config.init_from
            )

    def _load_teacher(self) -> nn.Module | None:
        config = self.config
        if not config.uses_class_loss:
            return None
        if not config.teacher:
            raise ConfigError(
                f"the {config.preset!r} preset has a class loss (lambda_s = {config.effective_lambda_s}), "
                "which needs an ImageNet VGG16 teacher: pass --teacher vgg16-397923af.pth (torchvision) or "
                "a Keras VGG16 h5 with top, or train without the class loss with --preset chromagan-noclass"
            )
        from .teacher import load_teacher

        teacher = load_teacher(config.teacher, config.teacher_input).to(self.device)
        log.info(
            "class teacher: %s, seeing the %s image",
            config.teacher,
            "colour" if teacher.needs_colour else "gray",
        )
        return teacher

    def _to_device(self) -> None:
        self.memory_format = (
            torch.channels_last if self.device.type in ("cuda", "cpu") else torch.contiguous_format
        )
        self.generator.to(self.device, memory_format=self.memory_format).train()
        if self.critic is not None:
            self.critic.to(self.device, memory_format=self.memory_format).train()

    def _build_optimizers(self) -> None:
        config = self.config
        # fused Adam: one kernel for all parameters instead of one per tensor. On the CPU too:
        # the paper-size generator's update went from 489 to 70 ms (2 cores, 2026-11-26)
        adam = {**config.adam_settings(), "fused": self.device.type in ("cuda", "cpu") or None}
        self.opt_g = torch.optim.Adam(
            [p for p in self.generator.parameters() if p.requires_grad], **adam
        )
        self.opt_d = (
            torch.optim.Adam(self.critic.parameters(), **adam) if self.critic is not None else None
        )
        # the gradient penalty's interpolation weights get their own stream, so that nothing else
        # drawing random numbers (DataLoader iterators do) can shift it: this is what makes
        # resuming exact
        self.eps_generator = torch.Generator(self.device)
        self.eps_generator.manual_seed(config.seed * 1000 + self.info.rank + 1)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )

    def _find_data(self) -> None:
        config, info = self.config, self.info
        paths, self.val_paths = self._image_lists()
        if len(paths) < config.batch_size * info.world_size:
            held = (
                f" after holding out {len(self.val_paths)} for validation"
                if config.val_fraction
                else ""
            )
            raise ConfigError(
                f"{config.data} has {len(paths)} images{held}, fewer than one batch "
                f"({config.batch_size} x {info.world_size} processes); add images or lower --batch-size"
                + (" or --val-fraction" if held else "")
            )
        self.paths = paths
        self.dataset = ColorizationDataset(
            paths,
            config.image_size,
            resize=config.resize,
            grayscale=config.grayscale,
            seed=config.seed,
        )
        self.sampler = ResumableSampler(
            len(paths),
            seed=config.seed,
            shuffle=True,
            rank=info.rank,
            world_size=info.world_size,
            drop_last=False,
        )
        self.sampler.set_epoch(0)
        self.steps_per_epoch = max(1, len(self.sampler) // config.batch_size)
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch

    def _image_lists(self) -> tuple[list[Path], list[Path]]:
        """(training images, held-out images) as ``--data``, ``--val-fraction`` and ``--val-data`` say."""
        config = self.config
        try:
            paths = find_images(config.data)
        except ValueError as exc:  # no images in the folder, a list file that is not text...
            raise ConfigError(f"--data: {exc}") from None
        if config.val_fraction is not None:
            return split_validation(paths, config.val_fraction, config.data)
        if config.val_data:
            try:
                return paths, find_images(config.val_data)
            except ValueError as exc:
                raise ConfigError(f"--val-data: {exc}") from None
        return paths, []

    # ----------------------------------------------------------------- the run

    @property
    def bare_generator(self) -> Generator:
        """The generator without its DDP and ``torch.compile`` wrappers."""
        return _unwrap(self.generator)

    @property
    def bare_critic(self) -> nn.Module:
        return _unwrap(self.critic)

    @property
    def inference_generator(self) -> Generator:
        """The generator that checkpoints, samples and validation use: the moving average of the
        weights with ``--ema-decay``, else the weights being trained."""
        return self.bare_generator if self.average is None else self.average.average

    def metadata(self) -> dict[str, Any]:
        """The checkpoint's metadata: what was trained, on what, and from what."""
        config = self.config
        return {
            "variant": config.preset,
            "class_head_trained": config.uses_class_loss,
            "teacher_input": config.teacher_input if config.uses_class_loss else None,
            "data": str(config.data),
            "images": len(self.paths),
            "steps": self.step,
            "epochs_seen": round(self.step / self.steps_per_epoch, 3),
            "batch_size": config.batch_size * self.info.world_size,
            "trained_with": f"napari-chromagan {__version__}",
            **({} if self.average is None else {"ema_decay": self.average.decay}),
            **(
                {}
                if self.fine_tuned_from is None
                else {
                    "fine_tuned_from": self.fine_tuned_from,
                    # a frozen class head keeps what the starting weights learnt
                    "class_head_trained": bool(
                        config.uses_class_loss or self.fine_tuned_from.get("class_head_trained")
                    ),
                }
            ),
            **({"validation_images": len(self.val_paths)} if self.val_paths else {}),
        }

    def train_step(
        self, L: torch.Tensor, ab: torch.Tensor, rgb: torch.Tensor | None = None
    ) -> dict[str, float] | None:
        """One generator step and n_critic critic steps (:func:`training.step.train_step`)."""
        return step.train_step(self, L, ab, rgb)

    def save(self) -> Path | None:
        """Write a checkpoint (every rank takes part in gathering RNG states; rank 0 writes)."""
        return checkpoints.save(self)

    def load(self, path: Path) -> None:
        """Resume from the checkpoint ``path`` (:func:`training.checkpoints.load`)."""
        checkpoints.load(self, path)

    def run(self, stop: StopRequest) -> TrainResult:
        """Train to the last step or a stop request (:func:`training.loop.run`)."""
        return loop.run(self, stop)


# --------------------------------------------------------------------------- the entry point


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) training as ``config`` says; under torchrun, on every rank."""
    config = absolute_paths(config)
    info = distributed.setup(config.device)
    finished = False
    try:
        trainer = _start(config, info)
        try:
            with StopRequest() as stop:
                result = trainer.run(stop)
        except BaseException as exc:
            _report_failure(trainer, exc)
            raise
        _report_end(trainer, result)
        finished = True
        return result
    finally:
        trainer = None  # the DDP wrappers (and their gradient reducers) go before the group does
        distributed.cleanup(finished)


def _start(config: TrainConfig, info: distributed.DistInfo) -> Trainer:
    """Check ``--out``, build the trainer, resume it if asked, and wrap it for the devices."""
    resume_from = prepare_output(config, info)
    if info.is_main:
        clean_interrupted_writes(Path(config.out))
    trainer = Trainer(config, info, resuming=resume_from is not None)
    if info.is_main:
        write_run_files(config, info, trainer.val_paths)
        log.info(
            "training on %s (%d process%s): %d images, %d steps",
            info.device_info,
            info.world_size,
            "es" if info.world_size > 1 else "",
            len(trainer.paths),
            trainer.total_steps,
        )
    if resume_from is not None:
        trainer.load(resume_from)
    if info.is_main:
        trim_metrics(Path(config.out) / "metrics.jsonl", trainer.step)
        if trainer.step < config.critic_warmup:
            log.info(
                "critic warm-up: steps %d to %d train the critic alone, the generator frozen",
                trainer.step + 1,
                config.critic_warmup,
            )
    if config.compile:
        trainer.generator = torch.compile(trainer.generator)
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.device.index] if info.device.type == "cuda" else None
        trainer.generator = DDP(trainer.generator, device_ids=ids)
        if trainer.critic is not None:
            trainer.critic = DDP(trainer.critic, device_ids=ids)
    return trainer


def _report_failure(trainer: Trainer, exc: BaseException) -> None:
    """Say in ``progress.json`` (rank 0, once the run has started) how the run ended."""
    if trainer.progress is None:
        return
    stopped = isinstance(exc, KeyboardInterrupt)
    newest = latest_checkpoint(trainer.config.out)
    message = (
        f"stopped at once at step {trainer.step} by a second interrupt; the newest checkpoint is "
        f"{newest.name if newest else 'none'}"
        if stopped
        else f"{type(exc).__name__}: {exc}"
    )
    trainer.progress.update(
        trainer.step,
        state="stopped" if stopped else "failed",
        message=message,
        checkpoint=newest,
    )


def _report_end(trainer: Trainer, result: TrainResult) -> None:
    if trainer.info.is_main and result.interrupted:
        log.warning("stopped at step %d; continue with --resume latest", trainer.step)
    if trainer.progress is not None:
        trainer.progress.update(
            trainer.step,
            state="stopped" if result.interrupted else "finished",
            checkpoint=result.checkpoint,
            message=f"stopped by a signal at step {trainer.step}; continue with --resume latest"
            if result.interrupted
            else None,
        )

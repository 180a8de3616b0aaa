"""The training loop: a generator step then ``n_critic`` critic steps on the same batch.

One process per device under torchrun (or a single process). Rank 0 alone logs, shows progress,
writes samples and checkpoints. Every checkpoint holds what an exact resume needs: both networks,
both optimizers, the grad scaler, step, epoch, the position in the epoch's data order and every
rank's RNG state. On the CPU a resumed run reproduces an uninterrupted one loss for loss.

Where this departs from the authors' code (chromagan-spec.md §3), on purpose:

* the generator and critic have their own Adam optimizers. The authors passed one Keras Adam
  instance to both compiled models, so its step counter advanced twice per iteration and the two
  networks shared bias-correction time; that was an accident of Keras, not a design.
* data is shuffled with a seed (the authors read files in ``os.listdir`` order, unshuffled);
* the teacher sees ImageNet-normalised input unless ``--teacher-input raw`` (see teacher.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from napari_chromagan import __version__
from napari_chromagan.atomic import (
    atomic_write,
    atomic_write_text,
    check_writable,
    remove_stale_parts,
)
from napari_chromagan.checkpoint import load_checkpoint, save_checkpoint
from napari_chromagan.errors import CheckpointError
from napari_chromagan.model import Critic, Generator

from . import distributed
from .config import ConfigError, TrainConfig
from .data import (
    ColorizationDataset,
    ResumableSampler,
    batch_to_lab,
    collate,
    find_images,
    make_loader,
)
from .losses import critic_loss, kl_teacher_student, mse_ab
from .progress import ProgressWriter
from .steptimer import StepTimer

__all__ = [
    "TrainResult",
    "TrainingError",
    "absolute_paths",
    "checkpoint_files",
    "init_weights_path",
    "latest_checkpoint",
    "split_validation",
    "train",
]

log = logging.getLogger("training")
_CKPT_RE = re.compile(r"^step-(\d{8,})\.pt$")
VALIDATION_LIST = "validation.txt"  # the held-out images of a run, one path a line


class TrainingError(RuntimeError):
    """Training had to stop; the message says why and what to do."""


@dataclass
class TrainResult:
    checkpoint: Path | None
    step: int
    interrupted: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


# --------------------------------------------------------------------------- checkpoints on disk


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


def _write_json_atomic(path: Path, values: Any) -> None:
    atomic_write_text(path, json.dumps(values, indent=2, sort_keys=True, default=str) + "\n")


# --------------------------------------------------------------------------- fine-tuning and validation


def init_weights_path(value: str) -> Path:
    """The file ``--init-from`` names: a path, ``default`` (what ``napari-chromagan colorize``
    uses without ``--weights``) or a name of :data:`napari_chromagan.registry.REGISTRY`.

    Raises
    ------
    WeightsNotFoundError
        A path that is not a file, a registry entry not on this machine, or no default weights.
    """
    from napari_chromagan import registry
    from napari_chromagan.errors import WeightsNotFoundError
    from napari_chromagan.weights import resolve_weights

    if value == "default":
        return resolve_weights(None)
    if value in registry.REGISTRY and not Path(value).exists():
        path = registry.entry_path(value)
        if path is None:
            raise WeightsNotFoundError(
                f"--init-from {value}: these weights are not on this machine yet; get them with "
                f"`napari-chromagan download-weights {value}` (or give a checkpoint file)"
            )
        return path
    return resolve_weights(value)


def split_validation(
    paths: list[Path], fraction: float, root: str | os.PathLike[str]
) -> tuple[list[Path], list[Path]]:
    """(training, held out): ``round(fraction * len(paths))`` files (at least one) held out.

    The held-out files are those whose path relative to ``root`` has the smallest SHA-1, so the
    split depends on the files alone (not on ``--seed`` or their order), and adding images to a
    folder moves few files from one side to the other. Both lists keep the input order.
    """
    root = Path(root)
    root = root if root.is_dir() else root.parent

    def key(path: Path) -> str:
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.as_posix()
        return hashlib.sha1(name.encode("utf-8")).hexdigest()

    count = min(len(paths), max(1, round(fraction * len(paths))))
    held = set(sorted(range(len(paths)), key=lambda i: key(paths[i]))[:count])
    return [p for i, p in enumerate(paths) if i not in held], [
        p for i, p in enumerate(paths) if i in held
    ]


# --------------------------------------------------------------------------- helpers


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.amp == "off" or (config.amp == "auto" and device.type != "cuda"):
        return None
    if config.amp == "fp16":
        return torch.float16
    return torch.bfloat16


def _unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "module", module)  # DDP
    return getattr(module, "_orig_mod", module)  # torch.compile


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints after the current step and exits."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
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


# --------------------------------------------------------------------------- the run


class Trainer:
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

        _seed_everything(config.seed)  # identical initial weights on every rank
        model_config = config.model_config()
        self.generator = Generator(model_config)
        self._init_trunk(resuming)
        if not config.uses_class_loss:
            # nothing trains the class head: freeze it, so DDP and the optimizer ignore it
            self.generator.class_head.requires_grad_(False)
        self.critic = Critic(config.critic_config()) if config.uses_critic else None
        if config.init_from and not resuming:  # a resume loads its own weights
            self._init_from_checkpoint(config.init_from)

        self.teacher = None
        if config.uses_class_loss:
            if not config.teacher:
                raise ConfigError(
                    f"the {config.preset!r} preset has a class loss (lambda_s = {config.effective_lambda_s}), "
                    "which needs an ImageNet VGG16 teacher: pass --teacher vgg16-397923af.pth (torchvision) or "
                    "a Keras VGG16 h5 with top, or train without the class loss with --preset chromagan-noclass"
                )
            from .teacher import load_teacher

            self.teacher = load_teacher(config.teacher, config.teacher_input).to(self.device)
            log.info(
                "class teacher: %s, seeing the %s image",
                config.teacher,
                "colour" if self.teacher.needs_colour else "gray",
            )

        memory_format = (
            torch.channels_last if self.device.type in ("cuda", "cpu") else torch.contiguous_format
        )
        self.memory_format = memory_format
        self.generator.to(self.device, memory_format=memory_format).train()
        if self.critic is not None:
            self.critic.to(self.device, memory_format=memory_format).train()

        # fused Adam: one kernel for all parameters instead of one per tensor. On the CPU too:
        # the paper-size generator's update went from 489 to 70 ms (2 cores, 2026-11-26)
        adam = {
            "lr": config.lr,
            "betas": (config.beta1, config.beta2),
            "eps": config.adam_eps,
            "fused": self.device.type in ("cuda", "cpu") or None,
        }
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
        self.eps_generator.manual_seed(config.seed * 1000 + info.rank + 1)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )

        # data
        try:
            paths = find_images(config.data)
        except ValueError as exc:  # no images in the folder, a list file that is not text...
            raise ConfigError(f"--data: {exc}") from None
        self.val_paths: list[Path] = []
        if config.val_fraction is not None:
            paths, self.val_paths = split_validation(paths, config.val_fraction, config.data)
        elif config.val_data:
            try:
                self.val_paths = find_images(config.val_data)
            except ValueError as exc:
                raise ConfigError(f"--val-data: {exc}") from None
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

    # ----------------------------------------------------------------- state

    def _training_state(self) -> dict[str, Any]:
        rng = self.eps_generator.get_state().cpu()
        if self.info.distributed:
            gathered: list[Any] = [None] * self.info.world_size
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        return {
            "config": self.config.to_dict(),
            "critic": None if self.critic is None else _unwrap(self.critic).state_dict(),
            "optimizer_generator": self.opt_g.state_dict(),
            "optimizer_critic": None if self.opt_d is None else self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "world_size": self.info.world_size,
            "rng_epsilon": gathered,
            "totals": dict(self.totals),
            "nonfinite_in_row": self.nonfinite_in_row,
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "variant": self.config.preset,
            "class_head_trained": self.config.uses_class_loss,
            "teacher_input": self.config.teacher_input if self.config.uses_class_loss else None,
            "data": str(self.config.data),
            "images": len(self.paths),
            "steps": self.step,
            "epochs_seen": round(self.step / self.steps_per_epoch, 3),
            "batch_size": self.config.batch_size * self.info.world_size,
            "trained_with": f"napari-chromagan {__version__}",
            **(
                {}
                if self.fine_tuned_from is None
                else {
                    "fine_tuned_from": self.fine_tuned_from,
                    # a frozen class head keeps what the starting weights learnt
                    "class_head_trained": bool(
                        self.config.uses_class_loss
                        or self.fine_tuned_from.get("class_head_trained")
                    ),
                }
            ),
            **({"validation_images": len(self.val_paths)} if self.val_paths else {}),
        }

    def save(self) -> Path | None:
        """Write a checkpoint (every rank takes part in gathering RNG states; rank 0 writes)."""
        state = self._training_state()
        if not self.info.is_main:
            return None
        folder = self.out / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        path = save_checkpoint(
            folder / f"step-{self.step:08d}.pt", _unwrap(self.generator), self.metadata(), state
        )
        for old in checkpoint_files(self.out)[: -self.config.keep_checkpoints]:
            old.unlink(missing_ok=True)
        log.info("checkpoint written: %s", path)
        return path

    def load(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        state = ckpt.training
        if not state:
            raise CheckpointError(
                f"{path} is an inference checkpoint without training state; it cannot be resumed"
            )
        saved = TrainConfig.from_dict(
            {k: v for k, v in state["config"].items() if k != "effective"}
        )
        for name in (
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
        ):
            if getattr(saved, name) != getattr(self.config, name):
                raise ConfigError(
                    f"cannot resume {path}: it was trained with {name}={getattr(saved, name)!r} but this run "
                    f"asks for {getattr(self.config, name)!r}; drop the flag or start a new --out"
                )
        _unwrap(self.generator).load_state_dict(ckpt.generator.state_dict())
        if self.critic is not None:
            _unwrap(self.critic).load_state_dict(state["critic"])
            self.opt_d.load_state_dict(state["optimizer_critic"])
        self.opt_g.load_state_dict(state["optimizer_generator"])
        self.scaler.load_state_dict(state["scaler"])
        self.fine_tuned_from = ckpt.metadata.get("fine_tuned_from")
        self.step, self.epoch, self.position = (
            int(state["step"]),
            int(state["epoch"]),
            int(state["position"]),
        )
        self.totals.update(state.get("totals", {}))
        self.nonfinite_in_row = int(state.get("nonfinite_in_row", 0))
        rank = self.info.rank
        if int(state.get("world_size", 1)) == self.info.world_size:
            self.eps_generator.set_state(state["rng_epsilon"][rank])
        else:
            log.warning(
                "resuming on %d processes a run saved on %d: the data order restarts at the epoch boundary",
                self.info.world_size,
                state.get("world_size"),
            )
            self.eps_generator.manual_seed(self.config.seed * 1000 + rank + 1 + self.step)
            self.position = 0
            self.epoch += 1
        log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.epoch)

    # ----------------------------------------------------------------- steps

    def _phase(self, name: str) -> contextlib.AbstractContextManager[None]:
        """A named part of the step, timed when a :class:`StepTimer` is attached (the benchmark)."""
        return self.timer.phase(name) if self.timer is not None else contextlib.nullcontext()

    def _init_trunk(self, resuming: bool) -> None:
        """Pretrained weights for the trunk, when the config asks for them (a resume loads its own)."""
        config = self.config
        if config.init_from:  # the whole generator comes from there
            return
        if config.trunk != "vgg16":
            if resuming:
                return
            if config.init_trunk == "none":
                log.warning(
                    "--init-trunk none: the %s trunk starts from random weights", config.trunk
                )
                return
            from .teacher import init_trunk_from_efficientnet

            init_trunk_from_efficientnet(self.generator, config.init_trunk)
            log.info(
                "trunk and class head initialised from ImageNet %s%s",
                config.trunk,
                f" ({config.init_trunk})" if config.init_trunk else "",
            )
        elif config.init_vgg16 and not resuming:  # the checkpoint holds the trained trunk
            from .teacher import init_trunk_from_vgg16

            init_trunk_from_vgg16(self.generator, config.init_vgg16)
            log.info("trunk initialised from %s", config.init_vgg16)
        elif not resuming:
            log.warning(
                "no --init-vgg16: the VGG16 trunk starts from random weights (slower to train)"
            )

    def _init_from_checkpoint(self, value: str) -> None:
        """Load the generator (and the critic, when the file has a fitting one) from ``--init-from``.

        The optimizers, the step and the data order start afresh: this is a new run.
        """
        path = init_weights_path(value)
        ckpt = load_checkpoint(path)
        wanted = self.generator.config
        if ckpt.config != wanted:
            raise ConfigError(
                f"--init-from {path}: its generator is {ckpt.config}, but this run builds {wanted}; the "
                "model's --width, --trunk and --image-size come from the file: drop those flags"
            )
        self.generator.load_state_dict(ckpt.generator.state_dict())
        critic_state = (ckpt.training or {}).get("critic")
        critic_note = "a fresh critic (the file has none)"
        if self.critic is not None and critic_state is not None:
            try:
                self.critic.load_state_dict(critic_state)
                critic_note = "its critic"
            except RuntimeError as exc:  # another critic width
                critic_note = (
                    "a fresh critic (the file's does not fit: " + str(exc).splitlines()[0] + ")"
                )
        elif self.critic is None:
            critic_note = "no critic (this preset has none)"
        metadata = ckpt.metadata
        self.fine_tuned_from = {
            "weights": str(path),
            "variant": metadata.get("variant"),
            "steps": metadata.get("steps"),
            "label": metadata.get("label"),
            "class_head_trained": metadata.get("class_head_trained"),
        }
        log.info("fine-tuning %s (%s), with %s", path, ckpt.config, critic_note)

    def _generator_step(
        self, L: torch.Tensor, ab: torch.Tensor, rgb: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        with self.autocast:
            with self._phase("generator forward"):
                ab_fake, logits = self.generator(L, with_class=config.uses_class_loss, logits=True)
                mse = mse_ab(ab_fake, ab)
            loss = mse
            parts = {"mse": mse.detach()}
            if self.teacher is not None:
                with self._phase("teacher forward + KL"):
                    kl = kl_teacher_student(self.teacher(L, rgb), logits)
                loss = loss + config.effective_lambda_s * kl
                parts["kl"] = kl.detach()
            if self.critic is not None:
                # the bare critic: its parameters are frozen here, and its DDP wrapper expects
                # gradients for them
                with self._phase("critic on fake"):
                    critic = _unwrap(self.critic)
                    adversarial = -critic(L, ab_fake).float().mean()
                loss = loss + config.effective_lambda_g * adversarial
                parts["adversarial"] = adversarial.detach()
        parts["loss_g"] = loss.detach()
        return loss, parts

    def train_step(
        self, L: torch.Tensor, ab: torch.Tensor, rgb: torch.Tensor | None = None
    ) -> dict[str, float] | None:
        """One generator step and n_critic critic steps; None when the step was skipped.

        The host waits on the device twice per step: once to check the generator loss is finite
        (a skipped step must not touch the weights) and once to read all the losses together.
        """
        config = self.config
        if self.critic is not None:
            self.critic.requires_grad_(False)
        loss_g, parts = self._generator_step(L, ab, rgb)
        with self._phase("finite check"):
            bad = not bool(torch.isfinite(loss_g))
            (any_bad,) = distributed.all_reduce_flags([float(bad)], self.info)
        if any_bad:
            self.opt_g.zero_grad(set_to_none=True)
            return None
        with self._phase("generator backward"):
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler.scale(loss_g).backward()
        with self._phase("generator update"):
            self.scaler.step(self.opt_g)
            self.scaler.update()

        if self.critic is not None:
            self.critic.requires_grad_(True)
            for _ in range(config.n_critic):
                # as the authors: the fake is regenerated by the updated generator, BN in training mode
                with self._phase("fake for critic"), torch.no_grad(), self.autocast:
                    ab_fake, _ = self.generator(L, with_class=False)
                with self._phase("critic forward + GP"):
                    epsilon = torch.rand(
                        L.shape[0], 1, 1, 1, device=self.device, generator=self.eps_generator
                    )
                    loss_d, disc = critic_loss(
                        self.critic, L, ab, ab_fake, epsilon, config.gp_weight
                    )
                    finite = bool(torch.isfinite(loss_d))
                if not finite:
                    log.warning("non-finite critic loss at step %d: critic step skipped", self.step)
                    continue
                with self._phase("critic backward"):
                    self.opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                with self._phase("critic update"):
                    self.opt_d.step()
            parts.update(disc, loss_d=loss_d.detach())
        with self._phase("losses to host"):
            values = torch.stack(
                [v.float() for v in parts.values()]
            ).tolist()  # one transfer, not one per loss
        return dict(zip(parts, values, strict=True))

    # ----------------------------------------------------------------- loop

    def _log_validation(self, validation: _Validation, metrics_file: Any, writer: Any) -> None:
        row = validation.run(self.step)
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        if writer is not None:
            for k, v in row.items():
                if k.startswith("val_"):
                    writer.add_scalar(k, v, self.step)
        self.progress.update(self.step, val={k: v for k, v in row.items() if k != "time"})

    def run(self, stop: _StopRequest) -> TrainResult:
        config, info = self.config, self.info
        main = info.is_main
        metrics_file = (self.out / "metrics.jsonl").open("a", encoding="utf-8") if main else None
        writer = _tensorboard(self.out) if main else None
        sampler_batch = _SampleBatch(self, config) if main and config.sample_every else None
        validation = _Validation(self) if main and self.val_paths else None
        if main:
            self.progress = ProgressWriter(self.out, self.total_steps, self.step)
            self.progress.update(self.step, checkpoint=latest_checkpoint(self.out))
        if validation is not None and self.step == 0:
            # where a new run starts from: for fine-tuning, the starting weights' own score
            self._log_validation(validation, metrics_file, writer)
        bar = None
        if main:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=self.total_steps,
                initial=self.step,
                unit="step",
                dynamic_ncols=True,
                disable=None,
                desc="training",
            )
        window: dict[str, list[float]] = {}
        window_images, window_start = 0, time.perf_counter()
        interrupted = False
        last_saved = -1
        try:
            while self.step < self.total_steps and not interrupted:
                self.sampler.set_epoch(self.epoch)
                self.dataset.set_epoch(self.epoch)
                self.sampler.set_start(self.position)
                steps_before, started_at = self.step, self.position
                loader = make_loader(
                    self.dataset,
                    self.sampler,
                    config.batch_size,
                    num_workers=config.num_workers,
                    pin_memory=self.device.type == "cuda",
                    drop_last=True,
                )
                for batch in loader:
                    n = int(batch.rgb.shape[0])
                    # one collective per batch carries both flags: a stop asked for on any process
                    # (a signal during the last step), and a batch with no readable image anywhere
                    any_empty, stop_now = distributed.all_reduce_flags(
                        [float(n == 0), float(stop.signal is not None)], info
                    )
                    if stop_now:  # this batch is not consumed: a resumed run starts with it
                        interrupted = True
                        break
                    self.position += int(batch.indices.numel()) + sum(batch.skipped.values())
                    for reason, count in batch.skipped.items():
                        self.totals[reason] = self.totals.get(reason, 0) + count
                    self.totals["grayscale"] += batch.grayscale
                    if any_empty:
                        log.warning("a batch had no readable image on some process: step skipped")
                        continue
                    rgb = batch.rgb.to(self.device, non_blocking=True)
                    L, ab = batch_to_lab(rgb)
                    L = L.contiguous(memory_format=self.memory_format)
                    ab = ab.contiguous(memory_format=self.memory_format)
                    values = self.train_step(L, ab, rgb)
                    if values is None:
                        self.nonfinite_in_row += 1
                        self.totals["nonfinite"] += 1
                        log.warning(
                            "non-finite generator loss at step %d: step skipped (%d in a row)",
                            self.step,
                            self.nonfinite_in_row,
                        )
                        if self.nonfinite_in_row >= config.max_nonfinite:
                            raise TrainingError(
                                f"{self.nonfinite_in_row} non-finite losses in a row at step {self.step}: training "
                                "diverged. Lower --lr, try --amp off, or resume from an earlier checkpoint."
                            )
                        continue
                    self.nonfinite_in_row = 0
                    self.step += 1
                    self.totals["images"] += n * info.world_size
                    window_images += n * info.world_size
                    for k, v in values.items():
                        window.setdefault(k, []).append(v)
                    self.history.append({"step": self.step, **values})

                    if main and (
                        self.step % config.log_every == 0 or self.step == self.total_steps
                    ):
                        elapsed = time.perf_counter() - window_start
                        record = {k: float(np.mean(v)) for k, v in window.items()}
                        record.update(
                            step=self.step,
                            epoch=self.epoch,
                            images_per_s=window_images / max(elapsed, 1e-9),
                            unreadable=self.totals.get("unreadable", 0),
                            skipped_grayscale=self.totals.get("skipped-grayscale", 0),
                            grayscale_kept=self.totals["grayscale"],
                            time=time.time(),
                        )
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                        if writer is not None:
                            for k, v in record.items():
                                if k not in ("step", "epoch", "time"):
                                    writer.add_scalar(k, v, self.step)
                        bar.set_postfix(
                            loss_g=f"{record['loss_g']:.4f}",
                            img_s=f"{record['images_per_s']:.1f}",
                            refresh=False,
                        )
                        self.progress.update(
                            self.step,
                            losses={k: record[k] for k in values},
                            images_per_s=record["images_per_s"],
                        )
                        window, window_images, window_start = {}, 0, time.perf_counter()
                    if bar is not None:
                        bar.update(1)
                    if sampler_batch is not None and self.step % config.sample_every == 0:
                        sampler_batch.write(self.step)
                    if validation is not None and (
                        (config.val_every and self.step % config.val_every == 0)
                        or self.step >= self.total_steps
                    ):
                        self._log_validation(validation, metrics_file, writer)

                    if self.step % config.checkpoint_every == 0 or self.step >= self.total_steps:
                        saved = self.save()
                        last_saved = self.step
                        if self.progress is not None:
                            self.progress.update(self.step, checkpoint=saved)
                    if self.step >= self.total_steps:
                        break
                else:
                    if steps_before == self.step and started_at == 0:
                        raise TrainingError(
                            f"a whole epoch of {config.data} gave no usable batch: the images are unreadable "
                            "(or all grayscale with --grayscale skip); see the warnings above"
                        )
                    self.epoch += 1
                    self.position = 0
            if last_saved != self.step:
                saved = self.save()
                if self.progress is not None:
                    self.progress.update(self.step, checkpoint=saved)
        finally:
            if bar is not None:
                bar.close()
            if metrics_file is not None:
                metrics_file.close()
            if writer is not None:
                writer.close()
        skipped = self.totals.get("unreadable", 0)
        if main and skipped:
            log.warning(
                "%d unreadable images were skipped (see the warnings above for which)", skipped
            )
        return TrainResult(
            latest_checkpoint(self.out) if main else None, self.step, interrupted, self.history
        )


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; metrics.jsonl always has everything
        return None
    return SummaryWriter(str(out / "tensorboard"))


class _SampleBatch:
    """A fixed batch whose colourisations are saved as PNG: gray / colourised / truth rows."""

    def __init__(self, trainer: Trainer, config: TrainConfig) -> None:
        self.trainer = trainer
        # the held-out images, when there are some: their colourisation says more than the training images'
        paths = (
            find_images(config.dev_data)
            if config.dev_data
            else (trainer.val_paths or trainer.paths)
        )
        dataset = ColorizationDataset(
            paths[: config.sample_count], config.image_size, resize="squash", seed=0
        )
        batch = collate([dataset[i] for i in range(len(dataset))])
        self.rgb = batch.rgb
        self.folder = trainer.out / "samples"

    @torch.no_grad()
    def write(self, step: int) -> Path | None:
        if self.rgb.shape[0] == 0:
            return None
        from PIL import Image

        from napari_chromagan.color import lab_to_rgb_uint8

        generator = _unwrap(self.trainer.generator)
        rgb = self.rgb.to(self.trainer.device)
        L, _ = batch_to_lab(rgb)
        was_training = generator.training
        generator.eval()
        try:
            ab, _ = generator(
                L.contiguous(memory_format=self.trainer.memory_format), with_class=False
            )
        finally:
            generator.train(was_training)
        lab = torch.cat([L * 100.0, ab.float() * 255.0 - 128.0], dim=1)
        colour = lab_to_rgb_uint8(lab, dim=1)
        gray = lab_to_rgb_uint8(torch.cat([L * 100.0, torch.zeros_like(ab)], dim=1), dim=1)
        rows = [torch.cat(list(t), dim=2) for t in (gray, colour, rgb)]  # each (3, S, n*S)
        grid = torch.cat(rows, dim=1).permute(1, 2, 0).cpu().numpy()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"step-{step:08d}.png"
        image = Image.fromarray(grid)
        atomic_write(path, lambda fh: image.save(fh, format="PNG"))
        return path


class _Validation:
    """The held-out images, scored in the authors' protocol at the network size by
    :func:`training.evaluate.score_network_size` (PSNR and colourfulness beside the no-colour floor).

    The images are read once (at most ``--val-limit`` colour ones; gray and unreadable files are
    skipped) and kept squashed to the network size.
    """

    def __init__(self, trainer: Trainer) -> None:
        from .evaluate import load_colour_image, squash

        self.trainer = trainer
        config = trainer.config
        self.images: list[np.ndarray] = []
        skipped = 0
        for path in trainer.val_paths:
            if len(self.images) >= config.val_limit:
                break
            rgb, _why = load_colour_image(path)
            if rgb is None:
                skipped += 1
                continue
            self.images.append(squash(rgb, config.image_size))
        if not self.images:
            raise ConfigError(
                f"none of the {len(trainer.val_paths)} held-out images is a readable colour image: validation "
                "needs colour photographs (check --val-data, or hold out more with --val-fraction)"
            )
        log.info(
            "validation: %d held-out colour images%s",
            len(self.images),
            f" ({skipped} gray or unreadable skipped)" if skipped else "",
        )

    @torch.no_grad()
    def run(self, step: int) -> dict[str, Any]:
        """Score the generator as it is now; returns the metrics row (``val_*`` keys)."""
        from napari_chromagan.colorize import Colorizer

        from .evaluate import score_network_size

        generator = _unwrap(self.trainer.generator)
        was_training = generator.training
        size = self.trainer.config.image_size
        previous = logging.getLogger("napari_chromagan.colorize").level
        logging.getLogger("napari_chromagan.colorize").setLevel(
            logging.WARNING
        )  # not "runs on cpu" each time
        try:
            colorizer = Colorizer(generator, self.trainer.device, precision="fp32")
            rows: list[dict[str, float]] = []
            for i in range(0, len(self.images), 16):
                rows.extend(score_network_size(colorizer, self.images[i : i + 16], size))
        finally:
            logging.getLogger("napari_chromagan.colorize").setLevel(previous)
            generator.train(was_training)

        def mean(key: str) -> float:
            return float(np.mean([row[key] for row in rows]))

        return {
            "step": step, "val_psnr": mean(f"psnr_{size}"), "val_psnr_floor": mean(f"psnr_{size}_floor"),
            "val_colourfulness": mean("cf"), "val_colourfulness_truth": mean("cf_truth"),
            "val_images": len(rows), "time": time.time(),
        }  # fmt: skip


def prepare_output(config: TrainConfig, info: distributed.DistInfo) -> Path | None:
    """Check the output folder and find the checkpoint to resume from (None: a fresh run).

    A file in the way or a folder that cannot be written fails here, before the data and the
    networks are loaded.
    """
    out = Path(config.out)
    if not config.out:
        raise ConfigError("--out is required: the folder for checkpoints, metrics and samples")
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"--out {out} is a file, not a folder: choose a folder for the run's checkpoints, "
            "metrics and samples (it is created if missing)"
        )
    check_writable(out, what="--out", fix="choose another --out folder, or make this one writable")
    existing = latest_checkpoint(out)
    if config.resume is None:
        if existing is not None:
            raise ConfigError(
                f"{out} already holds checkpoints (latest {existing.name}): pass --resume latest to continue "
                "that run, or choose a new --out; nothing is overwritten"
            )
        return None
    if config.resume == "latest":
        if existing is None:
            log.warning("--resume latest: no checkpoint in %s yet, starting a new run", out)
        return existing
    path = Path(config.resume)
    if not path.is_file():
        raise ConfigError(f"--resume {path}: no such checkpoint file")
    return path


_PATH_FIELDS = ("data", "out", "dev_data", "val_data")  # always paths
_MAYBE_PATH_FIELDS = (
    "teacher",
    "init_from",
    "init_vgg16",
    "init_trunk",
    "resume",
)  # a path, or a name/keyword


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its paths made absolute, so that ``config.json`` and the checkpoints can be
    resumed from any working directory. Names that are not paths (``--teacher
    efficientnet-lite0``, ``--resume latest``, ``--init-trunk none``) are kept as they are."""
    changes: dict[str, str] = {}
    for name in _PATH_FIELDS + _MAYBE_PATH_FIELDS:
        value = getattr(config, name)
        if not value:
            continue
        path = Path(value).expanduser()
        if name in _PATH_FIELDS or path.exists():
            changes[name] = os.path.abspath(path)
    return config.replace(**changes) if changes else config


def _clean_interrupted_writes(out: Path) -> None:
    """Remove the temporary files of checkpoints, samples and config.json that a killed run was
    writing (a paper-size checkpoint's is about 2 GB); nothing else writes into ``out`` now."""
    count = size = 0
    for folder in (out, out / "checkpoints", out / "samples"):
        removed, nbytes = remove_stale_parts(folder)
        count, size = count + removed, size + nbytes
    if count:
        log.info(
            "removed %d temporary file%s (%.1f MB) left by an interrupted run in %s",
            count,
            "s" if count > 1 else "",
            size / 1e6,
            out,
        )


def _trim_metrics(path: Path, step: int) -> None:
    """Keep the metric rows up to ``step``, where this run starts (or resumes): the rows that a
    killed run logged after its last checkpoint would otherwise appear twice."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
            row_step = int(row["step"])
        except (ValueError, KeyError, TypeError):  # a line cut off by the kill, or not a metric row
            continue
        if row_step <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))
        log.info(
            "%s: dropped %d row%s after step %d, logged by the interrupted run after its last checkpoint",
            path,
            len(lines) - len(kept),
            "s" if len(lines) - len(kept) > 1 else "",
            step,
        )


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) training as ``config`` says; under torchrun, on every rank."""
    config = absolute_paths(config)
    info = distributed.setup(config.device)
    try:
        resume_from = prepare_output(config, info)
        if info.is_main:
            _clean_interrupted_writes(Path(config.out))
        trainer = Trainer(config, info, resuming=resume_from is not None)
        if info.is_main:
            Path(config.out).mkdir(parents=True, exist_ok=True)
            effective = config.to_dict()
            effective["world_size"] = info.world_size
            effective["device_used"] = info.device_info
            _write_json_atomic(Path(config.out) / "config.json", effective)
            if (
                trainer.val_paths
            ):  # so that `python -m training evaluate --data OUT/validation.txt` scores them
                atomic_write_text(
                    Path(config.out) / VALIDATION_LIST, "".join(f"{p}\n" for p in trainer.val_paths)
                )
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
            _trim_metrics(Path(config.out) / "metrics.jsonl", trainer.step)
        if config.compile:
            trainer.generator = torch.compile(trainer.generator)
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [info.device.index] if info.device.type == "cuda" else None
            trainer.generator = DDP(trainer.generator, device_ids=ids)
            if trainer.critic is not None:
                trainer.critic = DDP(trainer.critic, device_ids=ids)
        try:
            with _StopRequest() as stop:
                result = trainer.run(stop)
        except BaseException as exc:
            if trainer.progress is not None:  # rank 0, once the run has started
                stopped = isinstance(exc, KeyboardInterrupt)
                newest = latest_checkpoint(config.out)
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
            raise
        if info.is_main and result.interrupted:
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
        return result
    finally:
        distributed.cleanup()

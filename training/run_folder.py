"""A run's output folder (``--out``): checked before anything is loaded, cleaned of what a killed
run left, and given ``config.json`` and ``validation.txt``; paths made absolute so that a run
resumes from any working directory."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from napari_chromagan.files.atomic import atomic_write_text, check_writable, remove_stale_parts

from . import distributed
from .checkpoints import latest_checkpoint
from .config import ConfigError, TrainConfig

__all__ = [
    "VALIDATION_LIST",
    "absolute_paths",
    "clean_interrupted_writes",
    "prepare_output",
    "trim_metrics",
    "write_json_atomic",
    "write_run_files",
]

log = logging.getLogger("training")
VALIDATION_LIST = "validation.txt"  # the held-out images of a run, one path a line

_PATH_FIELDS = ("data", "out", "dev_data", "val_data")  # always paths
_MAYBE_PATH_FIELDS = (
    "teacher",
    "init_from",
    "init_vgg16",
    "init_trunk",
    "resume",
)  # a path, or a name/keyword


def write_json_atomic(path: Path, values: Any) -> None:
    atomic_write_text(path, json.dumps(values, indent=2, sort_keys=True, default=str) + "\n")


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


def clean_interrupted_writes(out: Path) -> None:
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


def trim_metrics(path: Path, step: int) -> None:
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


def write_run_files(config: TrainConfig, info: distributed.DistInfo, val_paths: list[Path]) -> None:
    """``OUT/config.json`` (the config with the world size and device used) and, when images are
    held out, ``OUT/validation.txt``."""
    Path(config.out).mkdir(parents=True, exist_ok=True)
    effective = config.to_dict()
    effective["world_size"] = info.world_size
    effective["device_used"] = info.device_info
    write_json_atomic(Path(config.out) / "config.json", effective)
    if val_paths:  # so that `python -m training evaluate --data OUT/validation.txt` scores them
        atomic_write_text(Path(config.out) / VALIDATION_LIST, "".join(f"{p}\n" for p in val_paths))

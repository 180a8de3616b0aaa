"""One checkpoint format for the whole project: the plugin, the command line and training.

A checkpoint is a ``torch.save`` of a dict of tensors and plain Python values only::

    {
        "format": "napari-chromagan",
        "format_version": 1,
        "package_version": "0.1.0",
        "model_config": {"width": 1.0, "image_size": 224, "num_classes": 1000},
        "generator": {...state dict...},
        "metadata": {...free-form: variant, data, steps, class_head_trained...},
        "training": {...optional: critic, optimizers, step, RNG states...},
    }

It is loaded with ``torch.load(weights_only=True)``, which refuses pickled code, so opening a file
from the internet never runs anything from it. It is written to a temporary file in the target
folder and renamed into place, so a crash never leaves a half-written file under the real name.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_chromagan import __version__
from napari_chromagan.errors import CheckpointError
from napari_chromagan.files.atomic import atomic_write
from napari_chromagan.model.generator import Generator, ModelConfig
from napari_chromagan.weights.lookup import folder_hint

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "atomic_torch_save",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT = "napari-chromagan"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt generator (eval mode, on the CPU) and what came with it."""

    generator: Generator
    config: ModelConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    package_version: str = ""
    path: Path | None = None

    @property
    def class_head_trained(self) -> bool | None:
        """Whether the class head learnt anything (None when the file does not say)."""
        value = self.metadata.get("class_head_trained")
        return None if value is None else bool(value)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: torch.save(obj, fh))
    return path


def save_checkpoint(
    path: str | os.PathLike[str],
    generator: Generator,
    metadata: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    *,
    half: bool = False,
) -> Path:
    """Write ``generator`` (its config, weights and ``metadata``) atomically to ``path``.

    ``half`` stores floating-point weights as float16 (half the size; loading casts back to
    float32). ``training`` carries optional resumable state (critic, optimizers, step...).
    """
    state = {
        k: (
            v.detach().to("cpu", torch.float16)
            if half and v.is_floating_point()
            else v.detach().cpu()
        )
        for k, v in generator.state_dict().items()
    }
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model_config": generator.config.to_dict(),
        "generator": state,
        "metadata": dict(metadata or {}),
    }
    if training is not None:
        payload["training"] = dict(training)
    return atomic_torch_save(payload, path)


def _read(path: Path) -> Any:
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a weights file; {folder_hint(path)}")
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # torch.save has written zip archives since PyTorch 1.6
        raise CheckpointError(
            f"{path} is not a readable PyTorch file (no zip archive header): another kind of file, "
            "or a very old PyTorch format. Download or export it again."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global that is not a tensor or plain value: the file would
        # have run code on load. Say so, without the unpickler's long advice to disable the check.
        lines = [
            ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln or "GLOBAL" in ln
        ]
        reason = lines[0].split(". Please")[0] if lines else "unsupported content"
        raise CheckpointError(
            f"{path} holds Python objects beyond tensors and plain values, which could run code "
            f"when loaded, so it was refused unopened ({reason}). Use a checkpoint written by "
            "napari-chromagan (training's `export`, or `import-weights`)."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch file: it is truncated or corrupt, or another kind "
            f"of file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Download or export it again."
        ) from None


def _config_and_state(path: Path, payload: Any) -> tuple[ModelConfig, Mapping[str, Any]]:
    """The model config and generator state dict of a loaded payload, after checking that it is
    a napari-chromagan checkpoint of a format this version reads."""
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, Mapping) and any(str(k).startswith("features.") for k in payload):
            hint = " It looks like a torchvision VGG16 state dict, which initialises training (`--init-vgg16`)."
        raise CheckpointError(
            f"{path} is a PyTorch file but not a napari-chromagan checkpoint.{hint} Import the "
            "authors' Keras weights with `napari-chromagan import-weights`, or export a "
            "trained model with `python -m training export`."
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this napari-chromagan "
            f"({__version__}) reads up to {FORMAT_VERSION}. Upgrade napari-chromagan."
        )
    try:
        config = ModelConfig.from_dict(payload["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has no valid model_config: {exc}") from None
    state = payload.get("generator")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} has no generator state dict")
    return config, state


def _check_finite(path: Path, state: Mapping[str, Any]) -> None:
    """Refuse floating-point weights that hold NaN or inf."""
    broken = [
        k
        for k, v in state.items()
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if broken:
        # Loading them would colourise every image black or gray, with no error anywhere.
        listed = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        raise CheckpointError(
            f"{path}: {len(broken)} weight tensor{'s hold' if len(broken) > 1 else ' holds'} NaN or inf "
            f"({listed}): the file is damaged, or it was saved by a training run that diverged. Use "
            "another checkpoint (an earlier step), or download or export the file again."
        )


def _check_fit(
    path: Path, config: ModelConfig, own: Mapping[str, Any], state: Mapping[str, Any], strict: bool
) -> None:
    """Refuse weights whose shapes differ from the model's ``own`` state dict, or (``strict``)
    that lack or add keys."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if wrong or (strict and (missing or unexpected)):
        details = "; ".join(
            part
            for part in (
                f"shape mismatches: {', '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}"
                if wrong
                else "",
                f"missing: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
                if missing
                else "",
                f"unexpected: {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"
                if unexpected
                else "",
            )
            if part
        )
        raise CheckpointError(
            f"{path}: the weights do not fit the architecture its model_config describes "
            f"({config}): {details}. The file was made for another architecture or is damaged."
        )


def load_checkpoint(path: str | os.PathLike[str], *, strict: bool = True) -> Checkpoint:
    """Load and validate a napari-chromagan checkpoint; never executes code from the file.

    Raises
    ------
    CheckpointError
        Naming what is wrong: missing, a folder, empty, truncated or corrupt, pickled code, not a
        napari-chromagan checkpoint, a newer format, weights that hold NaN or inf, or weights
        that do not fit the architecture.
    """
    path = Path(path)
    payload = _read(path)
    config, state = _config_and_state(path, payload)
    _check_finite(path, state)
    generator = Generator(config)
    own = generator.state_dict()
    _check_fit(path, config, own, state, strict)
    generator.load_state_dict(
        {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()},
        strict=strict,
    )
    generator.eval()
    return Checkpoint(
        generator=generator,
        config=config,
        metadata=dict(payload.get("metadata") or {}),
        training=payload.get("training"),
        package_version=str(payload.get("package_version", "")),
        path=path,
    )

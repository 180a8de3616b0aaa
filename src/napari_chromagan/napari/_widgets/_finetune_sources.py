"""Where a fine-tuning run starts from, and what it trains on, for the Fine-tune widget.

The Start-from choices and the weights file each names; the viewer's colour layers written as
training images (:func:`training.finetune.write_training_images`). No widget state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Image

__all__ = [
    "START_CHOOSE",
    "START_COLORIZE",
    "START_DEFAULT",
    "START_SCRATCH",
    "start_choices",
    "start_weights",
    "write_layer_images",
]

START_COLORIZE = "colorize"
START_DEFAULT = "default"
START_CHOOSE = "choose"
START_SCRATCH = "scratch"


def start_choices(extra: list[str]) -> list[tuple[str, str]]:
    """The Start-from choices: the Colorize widget's weights, the default, every known weights
    file (the registry's, the cache's, then ``extra``), a file to choose, and scratch."""
    from napari_chromagan.errors import WeightsNotFoundError
    from napari_chromagan.weights import registry
    from napari_chromagan.weights.lookup import cached_weights, resolve_weights

    try:
        default: Path | None = resolve_weights(None)
    except WeightsNotFoundError:
        default = None
    choices = [
        ("the Colorize widget's weights", START_COLORIZE),
        (f"default: {default.name}" if default else "default: none found", START_DEFAULT),
    ]
    seen = {str(default)} if default else set()
    found = [registry.entry_path(name) for name in registry.REGISTRY]
    for path in [
        *(str(p) for p in found if p is not None),
        *(str(p) for p in cached_weights()),
        *extra,
    ]:
        if path not in seen:
            seen.add(path)
            choices.append((Path(path).name, path))
    choices += [("Choose file…", START_CHOOSE), ("scratch (random weights)", START_SCRATCH)]
    return choices


def start_weights(value: str) -> str | None:
    """The weights file the Start-from choice ``value`` names (None: scratch).

    Raises WeightsNotFoundError.
    """
    from napari_chromagan.napari.settings import load_settings
    from napari_chromagan.weights.lookup import resolve_weights

    if value == START_SCRATCH:
        return None
    if value == START_COLORIZE:
        chosen = load_settings("colorize").get("weights")  # what Colorize saved as its choice
        if isinstance(chosen, str) and Path(chosen).is_file():
            return chosen
        return str(resolve_weights(None))
    if value == START_DEFAULT:
        return str(resolve_weights(None))
    return str(resolve_weights(value))


def write_layer_images(layers: list[Image], folder: Path, tile: int) -> list[Path]:
    """The colour layers' pixels as training images in ``folder`` (tiles of ``tile`` pixels)."""
    from training.finetune import write_training_images

    images = []
    for layer in layers:
        data = layer.data[0] if layer.multiscale else layer.data
        limits = None if np.asarray(data[:1]).dtype == np.uint8 else tuple(layer.contrast_limits)
        images.append((layer.name, data, limits))
    return write_training_images(images, folder, tile)

"""napari-chromagan: ChromaGAN automatic colourisation (Vitoria, Raad & Ballester, WACV 2020).

The public API is imported lazily, so ``import napari_chromagan`` (which napari does while it
scans plugins) costs neither torch nor Qt.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from napari_chromagan import moved_modules

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "Generator": "model.generator",
    "ModelConfig": "model.generator",
    "load_vgg16_trunk": "model.generator",
    "Colorizer": "engine.colorize",
    "ColorizeResult": "engine.result",
    "colorize_layer": "napari.layers",
    "Normalization": "engine.normalize",
    "save_checkpoint": "weights.checkpoint",
    "load_checkpoint": "weights.checkpoint",
    "Checkpoint": "weights.checkpoint",
    "import_keras_weights": "weights.keras_import",
    "import_keras_weights_to_checkpoint": "weights.keras_import",
    "resolve_weights": "weights.lookup",
    "user_weights_dir": "weights.lookup",
    "Cancelled": "errors",
    "CheckpointError": "errors",
    "ChromaGANError": "errors",
    "DeviceError": "errors",
    "MissingPixelsWarning": "errors",
    "OutputError": "errors",
    "select_device": "device",
    "apply_color_hints": "edit.hints",
    "ColorHints": "edit.hints",
    "HintParams": "edit.hints",
    "HintError": "errors",
    "UnsupportedImageError": "errors",
    "WeightsNotFoundError": "errors",
}

__all__ = ["__version__", *_LAZY]


moved_modules.install()  # the old flat module paths still import, with a DeprecationWarning


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_chromagan' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"napari_chromagan.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from napari_chromagan.device import select_device
    from napari_chromagan.edit.hints import ColorHints, HintParams, apply_color_hints
    from napari_chromagan.engine.colorize import Colorizer
    from napari_chromagan.engine.normalize import Normalization
    from napari_chromagan.engine.result import ColorizeResult
    from napari_chromagan.errors import (
        Cancelled,
        CheckpointError,
        ChromaGANError,
        DeviceError,
        HintError,
        MissingPixelsWarning,
        OutputError,
        UnsupportedImageError,
        WeightsNotFoundError,
    )
    from napari_chromagan.model.generator import Generator, ModelConfig, load_vgg16_trunk
    from napari_chromagan.napari.layers import colorize_layer
    from napari_chromagan.weights.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from napari_chromagan.weights.keras_import import (
        import_keras_weights,
        import_keras_weights_to_checkpoint,
    )
    from napari_chromagan.weights.lookup import resolve_weights, user_weights_dir

"""napari-chromagan: ChromaGAN automatic colourisation (Vitoria, Raad & Ballester, WACV 2020).

The public API is imported lazily, so ``import napari_chromagan`` (which napari does while it
scans plugins) costs neither torch nor Qt.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "Generator": "model",
    "ModelConfig": "model",
    "load_vgg16_trunk": "model",
    "Colorizer": "colorize",
    "ColorizeResult": "colorize",
    "colorize_layer": "layers",
    "Normalization": "normalize",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "Checkpoint": "checkpoint",
    "import_keras_weights": "keras_import",
    "import_keras_weights_to_checkpoint": "keras_import",
    "resolve_weights": "weights",
    "user_weights_dir": "weights",
    "Cancelled": "errors",
    "CheckpointError": "errors",
    "ChromaGANError": "errors",
    "DeviceError": "errors",
    "MissingPixelsWarning": "errors",
    "OutputError": "errors",
    "select_device": "device",
    "apply_color_hints": "hints",
    "ColorHints": "hints",
    "HintParams": "hints",
    "HintError": "errors",
    "UnsupportedImageError": "errors",
    "WeightsNotFoundError": "errors",
}

__all__ = ["__version__", *_LAZY]


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
    from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from .colorize import Colorizer, ColorizeResult
    from .device import select_device
    from .errors import (
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
    from .hints import ColorHints, HintParams, apply_color_hints
    from .keras_import import import_keras_weights, import_keras_weights_to_checkpoint
    from .layers import colorize_layer
    from .model import Generator, ModelConfig, load_vgg16_trunk
    from .normalize import Normalization
    from .weights import resolve_weights, user_weights_dir

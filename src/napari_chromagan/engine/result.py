"""What the engine returns: a colourised image or stack, at full resolution (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_chromagan.engine.normalize import Normalization


@dataclass
class ColorizeResult:
    """What :meth:`Colorizer.colorize` returns.

    Attributes
    ----------
    rgb : ndarray
        uint8, the input's spatial shape + (3,).
    L : ndarray
        float32, the input's spatial shape: Lab L* in [0, 100] at full resolution (the normalised
        input; missing pixels are 50).
    ab : ndarray
        float32, spatial shape + (2,): the predicted Lab a*, b* at full resolution, before gamut
        fitting.
    class_probs : ndarray or None
        float32, stack shape + (num_classes,): one class distribution per plane (a 2D image has
        shape (num_classes,)); None when the class head was skipped.
    normalization : Normalization
        How intensities were mapped to L*.
    missing : ndarray or None
        bool, spatial shape: pixels that were NaN or inf (gray in the output); None if none were.
    device : str
        Where the network ran.
    weights : str or None
        The weights file, when the colourizer was loaded from one.
    """

    rgb: np.ndarray
    L: np.ndarray
    ab: np.ndarray
    class_probs: np.ndarray | None
    normalization: Normalization
    missing: np.ndarray | None
    device: str
    weights: str | None = None

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return self.L.shape[:-2]

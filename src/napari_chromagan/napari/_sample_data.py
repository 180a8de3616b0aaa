"""Sample data for napari's File > Open Sample menu (no network: scikit-image ships these)."""

from __future__ import annotations

from typing import Any

import numpy as np

LayerData = tuple[np.ndarray, dict[str, Any], str]


def camera_gray() -> list[LayerData]:
    """The classic 512x512 grayscale "camera" photograph."""
    from skimage.data import camera

    return [(camera(), {"name": "camera"}, "image")]


def coffee_gray_and_color() -> list[LayerData]:
    """A colour photograph in gray (to colourise), with its colour original for comparison."""
    from skimage.color import rgb2gray
    from skimage.data import coffee

    rgb = coffee()
    gray = (rgb2gray(rgb) * 255).round().astype(np.uint8)
    return [
        (rgb, {"name": "coffee (colour original)", "rgb": True, "visible": False}, "image"),
        (gray, {"name": "coffee"}, "image"),
    ]

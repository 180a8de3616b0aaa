"""What the engine accepts: array shapes and dtypes, the colour axis, batch sizes (no torch, no Qt)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from napari_chromagan.errors import UnsupportedImageError

__all__ = ["ACCEPTED_DTYPES", "MAX_CHANNELS", "check_batch_size", "check_image", "image_layout"]

# A last axis shorter than this that is neither colour (3, 4) nor 1 is taken for channels, not
# for the width of a stack of images: (H, W, 2) is a two-channel image, not H images 2 pixels wide.
MAX_CHANNELS = 8
ACCEPTED_DTYPES = "uint8, uint16, int16, int32 and other integer types, float32 and float64"


def check_batch_size(value: Any, name: str = "batch_size") -> int:
    """``value`` as a batch size: a whole number >= 1, else a TypeError or ValueError saying so."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be a whole number >= 1 (planes per network call, e.g. {name}=8), "
            f"got {value!r} ({type(value).__name__})"
        )
    if value < 1:
        raise ValueError(
            f"{name} must be at least 1 (planes per network call, e.g. {name}=8), got {value}"
        )
    return int(value)


def image_layout(
    shape: tuple[int, ...], rgb: bool | None = None
) -> tuple[tuple[int, ...], bool, bool]:
    """How :meth:`Colorizer.colorize <napari_chromagan.engine.colorize.Colorizer.colorize>` reads an array of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        The array's shape, at least 2D.
    rgb : bool, optional
        Whether the last axis is colour; None decides from the shape: a last axis of 3 or 4 is
        colour, one of 1 is dropped, and any other length below :data:`MAX_CHANNELS` is refused
        as ambiguous (channels, not a width).

    Returns
    -------
    (spatial, is_rgb, squeeze)
        The shape of the lightness result (stack axes + (H, W)), whether the last axis is colour,
        and whether a last axis of length 1 is dropped.

    Raises
    ------
    UnsupportedImageError
        For a last axis that looks like channels (naming the shape and how to pass it), or a
        colour axis that is not 3 or 4 long when ``rgb=True``.
    """
    shape = tuple(int(n) for n in shape)
    last = shape[-1]
    if rgb is None:
        if len(shape) >= 3 and last == 1:
            return shape[:-1], False, True
        if len(shape) >= 3 and last < MAX_CHANNELS and last not in (3, 4):
            stack = math.prod(shape[:-2])
            raise UnsupportedImageError(
                f"an array of shape {shape} has a last axis of length {last}, which looks like {last} "
                f"channels rather than an image {last} pixels wide (it would be read as {stack} images of "
                f"{shape[-2]} x {last} pixels). Colourise one channel with image[..., 0] (or another "
                "index), or pass rgb=False if it really is a stack of narrow images",
                cli_message=(
                    f"shape {shape}: the last axis of length {last} looks like {last} channels, not an "
                    f"image {last} pixels wide; choose the channel to colourise with --channel N "
                    f"(N from 0 to {last - 1})"
                ),
            )
        rgb = len(shape) >= 3 and last in (3, 4)
    if rgb and (len(shape) < 3 or last not in (3, 4)):
        raise UnsupportedImageError(
            f"a colour image needs a last axis of length 3 (RGB) or 4 (RGBA), got shape {shape}; "
            "pass rgb=False for a grayscale stack"
        )
    return (shape[:-1] if rgb else shape), bool(rgb), False


def check_image(image: Any, rgb: bool | None) -> tuple[bool, bool]:
    """Validate ``image``; return whether its last axis is colour and whether it is dropped (length 1)."""
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if shape is None or dtype is None:
        raise UnsupportedImageError(
            f"expected a numpy or dask array, got {type(image).__name__}; wrap it with np.asarray"
        )
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        kind = {"b": "bool", "c": "complex", "O": "object"}.get(dtype.kind, str(dtype))
        raise UnsupportedImageError(
            f"cannot colourise a {kind} array; accepted dtypes: {ACCEPTED_DTYPES}. "
            "Convert a mask with .astype(np.uint8) * 255, or take np.abs of complex data.",
            cli_message=(
                f"cannot colourise {kind} pixel values; accepted: {ACCEPTED_DTYPES}. Save the image with "
                "real-valued pixels (for complex data, its magnitude) and run again"
            ),
        )
    if len(shape) < 2:
        raise UnsupportedImageError(
            f"need at least a 2D image (H, W), got shape {tuple(shape)}; "
            "accepted: (H, W), (H, W, 3|4) colour, or stacks (..., H, W)"
        )
    if any(n == 0 for n in shape):
        raise UnsupportedImageError(
            f"the image is empty (shape {tuple(shape)}): every axis needs length >= 1"
        )
    _, is_rgb, squeeze = image_layout(tuple(shape), rgb)
    return is_rgb, squeeze

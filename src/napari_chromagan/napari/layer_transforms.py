"""Where a colourised layer goes: the source layer's transforms, for the whole layer or one plane.

Reads the transforms of a napari Image layer (any object with its attributes); imports neither
napari nor Qt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["transform_kwargs"]


def _shear_matrix(shear: np.ndarray, ndim: int) -> np.ndarray:
    shear = np.asarray(shear, float)
    if shear.ndim == 2:
        return shear
    matrix = np.eye(ndim)
    matrix[np.triu_indices(ndim, 1)] = shear
    return matrix


def _block_diagonal(matrix: np.ndarray, k: int) -> bool:
    return not (np.any(matrix[:k, k:]) or np.any(matrix[k:, :k]))


def transform_kwargs(layer: Any, plane: tuple[int, ...] | None) -> dict[str, Any]:
    """The source's transforms, axis labels and units, restricted to the spatial axes of a plane."""
    n = layer.ndim
    affine = layer.affine
    kwargs: dict[str, Any] = {
        "scale": np.asarray(layer.scale, float),
        "translate": np.asarray(layer.translate, float),
        "rotate": np.asarray(layer.rotate, float),
        "shear": _shear_matrix(layer.shear, n),
        "affine": np.asarray(affine.affine_matrix, float),
        "axis_labels": tuple(layer.axis_labels),
        "units": tuple(layer.units),
    }
    if plane is None:
        return kwargs
    k = len(plane)
    s = slice(k, n)
    kwargs["axis_labels"] = kwargs["axis_labels"][s]
    kwargs["units"] = kwargs["units"][s]
    linear = np.asarray(affine.linear_matrix, float)
    if all(_block_diagonal(m, k) for m in (kwargs["rotate"], kwargs["shear"], linear)):
        # The plane's spatial placement does not depend on its index: slice each part.
        kwargs["scale"] = kwargs["scale"][s]
        kwargs["translate"] = kwargs["translate"][s]
        kwargs["rotate"] = kwargs["rotate"][s, s]
        kwargs["shear"] = kwargs["shear"][s, s]
        kwargs["affine"] = _homogeneous(linear[s, s], np.asarray(affine.translate, float)[s])
        return kwargs
    # Stack and plane axes are mixed (a 3D rotation or shear): place the plane with one affine.
    physical = kwargs["rotate"] @ kwargs["shear"] @ np.diag(kwargs["scale"])
    total = kwargs["affine"] @ _homogeneous(physical, kwargs["translate"])
    translate = total[s, n] + total[s, :k] @ np.asarray(plane, float)
    spatial = n - k
    kwargs.update(
        scale=np.ones(spatial),
        translate=np.zeros(spatial),
        rotate=np.eye(spatial),
        shear=np.eye(spatial),
        affine=_homogeneous(total[s, s], translate),
    )
    return kwargs


def _homogeneous(linear: np.ndarray, translate: np.ndarray) -> np.ndarray:
    n = linear.shape[0]
    matrix = np.eye(n + 1)
    matrix[:n, :n] = linear
    matrix[:n, n] = translate
    return matrix

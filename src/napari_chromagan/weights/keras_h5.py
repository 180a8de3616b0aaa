"""Reading Keras 2 weight files (HDF5), the one walker of the package.

A Keras ``model.save`` file keeps its weights under ``/model_weights``, a ``save_weights`` file
at the root; either way the weights group lists its layers in the ``layer_names`` attribute and
each layer group lists its arrays in ``weight_names`` (``"conv2d_6/kernel:0"``...), long lists
split into ``weight_names0``, ``weight_names1``... The authors' generator
(:mod:`napari_chromagan.weights.keras_import`) and Keras' VGG16 files (``training.teacher``) are read
through these functions. ``h5py`` is needed only here (``pip install "napari-chromagan[keras]"``).
"""

from __future__ import annotations

from typing import Any

from napari_chromagan.errors import CheckpointError

__all__ = [
    "INSTALL_HINT",
    "attr_strings",
    "layer_arrays",
    "require_h5py",
    "short_name",
    "weights_root",
]

INSTALL_HINT = 'reading Keras .h5 weights needs h5py: pip install "napari-chromagan[keras]"'


def require_h5py() -> Any:
    """The h5py module; ``ImportError`` saying how to install it when it is missing."""
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return h5py


def weights_root(f: Any) -> Any | None:
    """The group of ``f`` (an open ``h5py.File``) that holds the layers, or None if neither the
    root nor ``/model_weights`` lists any (not a Keras weights file)."""
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        return f
    if "model_weights" in f:
        return f["model_weights"]
    return None


def attr_strings(group: Any, name: str) -> list[str]:
    """A list-of-strings attribute as Keras writes it (also split as name0, name1... if large)."""
    if name in group.attrs:
        raw = list(group.attrs[name])
    elif f"{name}0" in group.attrs:
        raw, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            raw += list(group.attrs[f"{name}{chunk}"])
            chunk += 1
    else:
        raise CheckpointError(
            f"group '{group.name}' has no '{name}' attribute: not a Keras weights file"
        )
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in raw]


def short_name(weight_name: str) -> str:
    """'conv2d_6/kernel:0' -> 'kernel'."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def layer_arrays(root: Any, layer: str) -> list[tuple[str, Any]]:
    """``(weight name, h5py dataset)`` of each array of ``layer``, in ``weight_names`` order
    (datasets are read only when indexed, so a check of shapes reads no weights)."""
    group = root[layer]
    arrays = []
    for name in attr_strings(group, "weight_names"):
        try:
            arrays.append((name, group[name]))
        except KeyError:
            raise CheckpointError(f"group '{layer}': array '{name}' is missing") from None
    return arrays

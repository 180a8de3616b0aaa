"""What a colourised napari layer carries, so that other widgets never re-run the network.

The Colorize widget (and :func:`napari_chromagan.colorize_layer`) stores a :class:`LayerResult`
under ``layer.metadata["chromagan"]`` as a plain dict (napari copies and compares layer metadata;
a dict of arrays and builtins survives that). The Class distribution and Chroma blend widgets read
it back with :func:`get_layer_result`.

This module imports neither Qt nor napari: it works on anything with a ``metadata`` mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .colorize import ColorizeResult

__all__ = ["METADATA_KEY", "LayerResult", "get_layer_result", "is_colorized", "result_metadata"]

METADATA_KEY = "chromagan"
_VERSION = 1


@dataclass
class LayerResult:
    """The model's output for one colourised layer.

    Attributes
    ----------
    L : ndarray
        float32 (*stack, H, W): the normalised input as L* in [0, 100].
    ab : ndarray
        float32 (*stack, H, W, 2): the model's a*, b* at full resolution, before any blending
        and before gamut fitting. Blending always starts again from this.
    class_probs : ndarray or None
        float32 (*stack, num_classes), or None when the class head was skipped.
    class_head_trained : bool or None
        Whether the weights' class head was trained (None: the weights do not say).
    source : str
        The name of the layer that was colourised.
    normalization : dict
        How intensities were mapped to L* (:meth:`Normalization.to_dict`).
    weights : str or None
        The weights file used.
    device : str
        Where the network ran.
    plane : tuple of int or None
        For a "current plane" run of a stack: the index of that plane on the source's leading
        axes; None when the whole layer was colourised.
    blend : dict
        The Chroma blend settings now applied to the layer's pixels ({} = the model's output).
    provenance : dict or None
        The provenance record of the colourisation (:mod:`napari_chromagan.provenance`: software,
        version, weights and their sha256, precision, normalisation, date), which the plugin's
        writer stores in the files napari saves; None for results stored by older versions.
    """

    L: np.ndarray
    ab: np.ndarray
    class_probs: np.ndarray | None
    class_head_trained: bool | None
    source: str
    normalization: dict[str, Any]
    weights: str | None
    device: str
    plane: tuple[int, ...] | None = None
    blend: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.ab.shape != (*self.L.shape, 2):
            raise ValueError(f"ab has shape {self.ab.shape}; expected {(*self.L.shape, 2)} for L of shape {self.L.shape}")
        if self.class_probs is not None and self.class_probs.shape[:-1] != self.L.shape[:-2]:
            raise ValueError(
                f"class_probs has shape {self.class_probs.shape}; expected the stack shape "
                f"{self.L.shape[:-2]} plus the number of classes"
            )

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return self.L.shape[:-2]

    @classmethod
    def from_colorize_result(
        cls,
        result: ColorizeResult,
        *,
        source: str,
        class_head_trained: bool | None,
        plane: tuple[int, ...] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> LayerResult:
        return cls(
            L=result.L,
            ab=result.ab,
            class_probs=result.class_probs,
            class_head_trained=class_head_trained,
            source=source,
            normalization=result.normalization.to_dict(),
            weights=result.weights,
            device=result.device,
            plane=plane,
            provenance=None if provenance is None else dict(provenance),
        )

    def file_provenance(self) -> dict[str, Any] | None:
        """The record for a file of the layer's pixels as they are now: the colourisation's
        provenance plus the Chroma blend applied since, if any; None when there is no record."""
        if self.provenance is None:
            return None
        record = dict(self.provenance)
        if self.blend:
            record["blend"] = dict(self.blend)
        return record

    def to_metadata(self) -> dict[str, Any]:
        """The dict stored under ``layer.metadata[METADATA_KEY]``."""
        # not dataclasses.asdict: it deep-copies, and L/ab of a big stack must not exist twice
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["blend"] = dict(self.blend)
        values["provenance"] = None if self.provenance is None else dict(self.provenance)
        values["version"] = _VERSION
        return values


def result_metadata(result: LayerResult, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of a layer's ``existing`` metadata with ``result`` stored in it (never in place)."""
    metadata = dict(existing or {})
    metadata[METADATA_KEY] = result.to_metadata()
    return metadata


def is_colorized(layer: Any) -> bool:
    """Whether ``layer`` carries a colourisation result."""
    metadata = getattr(layer, "metadata", None)
    return isinstance(metadata, dict) and isinstance(metadata.get(METADATA_KEY), dict)


def get_layer_result(layer: Any) -> LayerResult:
    """The :class:`LayerResult` stored on ``layer``.

    Raises
    ------
    ValueError
        When the layer was not made by napari-chromagan (run Colorize on it first) or its stored
        result is damaged.
    """
    if not is_colorized(layer):
        name = getattr(layer, "name", repr(layer))
        raise ValueError(f"layer {name!r} has no colourisation result: run Colorize on its source layer first")
    stored = dict(layer.metadata[METADATA_KEY])
    version = stored.pop("version", None)
    if version != _VERSION:
        raise ValueError(f"layer {layer.name!r} holds a colourisation result of unknown version {version!r}")
    plane = stored.get("plane")
    stored["plane"] = None if plane is None else tuple(int(i) for i in plane)
    try:
        return LayerResult(**stored)
    except TypeError as exc:
        raise ValueError(f"layer {layer.name!r} holds a damaged colourisation result: {exc}") from None

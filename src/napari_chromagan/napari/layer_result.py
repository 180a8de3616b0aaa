"""What a colourised napari layer carries, so that other widgets never re-run the network.

The Colorize widget (and :func:`napari_chromagan.colorize_layer`) stores a :class:`LayerResult`
under ``layer.metadata["chromagan"]`` as a plain dict (napari copies and compares layer metadata;
a dict of arrays and builtins survives that). The Class distribution, Chroma blend and Colour
hints widgets read it back with :func:`get_layer_result`.

Storage (version 2) costs 6 bytes per pixel beside the layer's RGB, where version 1 cost 12:

* L* as uint16 codes, ``round(L* * 655.35)`` (:class:`PackedLightness`, 2 bytes): decoded to
  float32 plane by plane, within 0.0008 of the engine's L*;
* a*, b* as float16 (4 bytes): within 1/32 of the engine's float32 (float16 keeps 11
  significant bits: a step of 1/16 where a* or b* is 64 to 128 in magnitude, finer below).

A re-rendering from the stored values (Chroma blend at other settings, colour hints) therefore
differs from one from the engine's float32 arrays by at most a few 8-bit levels on a few pixels
(``bench/bench_layer_memory.py`` measures it on photographs); the layer's own RGB is the
engine's, untouched, and is what every widget shows at its neutral settings. L* is stored
rather than recomputed from the source layer because that layer may since have been removed,
edited or replaced, may be a lazy (dask) or multiscale array that is slow to read again, and
need not be in a saved session at all.

Results stored by earlier versions (float32 L and a*b*, version 1) are read as they are.

This module imports neither Qt, napari nor torch: it works on anything with a ``metadata``
mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from napari_chromagan.engine.result import ColorizeResult

__all__ = [
    "METADATA_KEY",
    "LayerResult",
    "PackedLightness",
    "get_layer_result",
    "is_colorized",
    "pack_ab",
    "result_metadata",
]

METADATA_KEY = "chromagan"
_VERSION = 2  # 1: float32 "L" and "ab" (12 bytes per pixel); 2: uint16 "L_codes", float16 "ab"
_VERSIONS = (1, 2)

_CODES_PER_UNIT = np.float32(65535.0 / 100.0)  # uint16 codes per unit of L*
_UNITS_PER_CODE = np.float32(100.0 / 65535.0)
_STRIP_PIXELS = 1 << 20  # pixels packed per step: bounds the float temporaries


def _strips(shape: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """Index tuples covering pixels of ``shape`` (*stack, H, W) in strips of whole rows."""
    if len(shape) < 2:
        return [()]
    H, W = shape[-2:]
    rows = max(1, _STRIP_PIXELS // max(1, W))
    return [
        (*index, slice(r0, r0 + rows))
        for index in np.ndindex(*shape[:-2])
        for r0 in range(0, H, rows)
    ]


class PackedLightness:
    """L* in [0, 100] in 2 bytes per pixel: uint16 codes, decoded to float32 on indexing.

    ``code = round(L* * 65535 / 100)``, so a decoded value is within 100 / 131070 (0.00077, plus
    float32 rounding) of the packed one. Indexing (``packed[index]``) decodes just what it
    selects, so a widget that renders one plane decodes one plane; ``np.asarray(packed)``
    decodes everything.

    Parameters
    ----------
    codes : ndarray
        uint16 (*stack, H, W), not copied.
    """

    __slots__ = ("codes",)

    def __init__(self, codes: np.ndarray) -> None:
        if not isinstance(codes, np.ndarray) or codes.dtype != np.uint16 or codes.ndim < 2:
            raise ValueError(
                f"packed L* codes must be a uint16 array of at least 2 dimensions, got "
                f"{getattr(codes, 'dtype', type(codes).__name__)} {np.shape(codes)}"
            )
        self.codes = codes

    @classmethod
    def pack(cls, L: Any) -> PackedLightness:
        """Pack float L* (*stack, H, W), in strips (no full-size float temporary).

        Values outside [0, 100] are clipped to it (the engine's L* never is: float rounding
        aside). Raises ValueError for NaN or infinite values.
        """
        shape = tuple(np.shape(L))
        codes = np.empty(shape, np.uint16)
        for at in _strips(shape):
            strip = np.asarray(L[at], np.float32)
            if not np.isfinite(strip).all():
                raise ValueError("L* holds NaN or infinite values: it cannot be stored")
            scaled = np.multiply(np.clip(strip, 0.0, 100.0), _CODES_PER_UNIT)
            codes[at] = np.rint(scaled, out=scaled)
        return cls(codes)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    @property
    def ndim(self) -> int:
        return self.codes.ndim

    @property
    def size(self) -> int:
        return self.codes.size

    @property
    def dtype(self) -> np.dtype:
        """The dtype indexing gives (float32); the storage is :attr:`codes` (uint16)."""
        return np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes held (the codes): 2 per pixel."""
        return self.codes.nbytes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.multiply(self.codes[key], _UNITS_PER_CODE, dtype=np.float32)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("PackedLightness decodes into a new array: it cannot give a view")
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"PackedLightness(shape={self.shape})"


def pack_ab(ab: Any) -> np.ndarray:
    """a*, b* as stored: float16, ``ab`` itself when it already is; converted in strips."""
    if isinstance(ab, np.ndarray) and ab.dtype == np.float16:
        return ab
    shape = tuple(np.shape(ab))
    out = np.empty(shape, np.float16)
    for at in _strips(shape[:-1]):
        out[at] = np.asarray(ab[at], np.float32)
    return out


@dataclass
class LayerResult:
    """The model's output for one colourised layer.

    Attributes
    ----------
    L : PackedLightness or ndarray
        (*stack, H, W): the normalised input as L* in [0, 100]; ``L[index]`` is float32.
        Packed (2 bytes per pixel) in what :meth:`from_colorize_result`, :meth:`packed` and
        :func:`get_layer_result` give; a float32 array in a result of version 1, or one built
        directly from float arrays (it is packed when stored).
    ab : ndarray
        (*stack, H, W, 2): the model's a*, b* at full resolution, before any blending and
        before gamut fitting; float16 once stored (float32 in a result of version 1).
        Blending always starts again from this.
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
        The provenance record of the colourisation (:mod:`napari_chromagan.files.provenance`: software,
        version, weights and their sha256, precision, normalisation, date), which the plugin's
        writer stores in the files napari saves; None for results stored by older versions.
    """

    L: PackedLightness | np.ndarray
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
        if not isinstance(self.L, PackedLightness):
            self.L = np.asarray(self.L)
        self.ab = np.asarray(self.ab)
        if self.ab.shape != (*self.L.shape, 2):
            raise ValueError(
                f"ab has shape {self.ab.shape}; expected {(*self.L.shape, 2)} for L of shape {self.L.shape}"
            )
        if self.class_probs is not None and self.class_probs.shape[:-1] != self.L.shape[:-2]:
            raise ValueError(
                f"class_probs has shape {self.class_probs.shape}; expected the stack shape "
                f"{self.L.shape[:-2]} plus the number of classes"
            )

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return self.L.shape[:-2]

    @property
    def is_packed(self) -> bool:
        """Whether L* and a*b* are in their stored form (6 bytes per pixel)."""
        return isinstance(self.L, PackedLightness) and self.ab.dtype == np.float16

    def packed(self) -> LayerResult:
        """This result with L* and a*b* in their stored form; ``self`` when they already are."""
        if self.is_packed:
            return self
        L = self.L if isinstance(self.L, PackedLightness) else PackedLightness.pack(self.L)
        return replace(self, L=L, ab=pack_ab(self.ab))

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
        """The stored form of an engine result (packed: the engine's float32 arrays are not kept)."""
        return cls(
            L=PackedLightness.pack(result.L),
            ab=pack_ab(result.ab),
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
        """The dict stored under ``layer.metadata[METADATA_KEY]`` (always the packed form)."""
        packed = self.packed()
        # not dataclasses.asdict: it deep-copies, and the arrays of a big stack must not exist twice
        values = {f.name: getattr(packed, f.name) for f in fields(packed)}
        values["L_codes"] = values.pop("L").codes
        values["blend"] = dict(packed.blend)
        values["provenance"] = None if packed.provenance is None else dict(packed.provenance)
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
    """The :class:`LayerResult` stored on ``layer`` (its arrays shared, not copied).

    Reads both the packed layout (version 2) and the float32 one of earlier versions (1).

    Raises
    ------
    ValueError
        When the layer was not made by napari-chromagan (run Colorize on it first) or its stored
        result is damaged.
    """
    if not is_colorized(layer):
        name = getattr(layer, "name", repr(layer))
        raise ValueError(
            f"layer {name!r} has no colourisation result: run Colorize on its source layer first"
        )
    stored = dict(layer.metadata[METADATA_KEY])
    version = stored.pop("version", None)
    if version not in _VERSIONS:
        raise ValueError(
            f"layer {layer.name!r} holds a colourisation result of unknown version {version!r}"
        )
    plane = stored.get("plane")
    stored["plane"] = None if plane is None else tuple(int(i) for i in plane)
    try:
        if version == 2:
            stored["L"] = PackedLightness(stored.pop("L_codes"))
            if getattr(stored.get("ab"), "dtype", None) != np.float16:
                raise ValueError(f"ab is {getattr(stored.get('ab'), 'dtype', None)}, not float16")
        return LayerResult(**stored)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"layer {layer.name!r} holds a damaged colourisation result: {exc}"
        ) from None

"""The provenance record: what it holds, its JSON form and its description (no Qt, no torch).

A provenance record is a small JSON-able dict::

    {"schema": 1, "software": "napari-chromagan", "version": "0.1.0",
     "statement": "Colours generated automatically by napari-chromagan ...",
     "weights_name": "chromagan-lite0.pt", "weights_sha256": "6f1c...",
     "precision": "fp32", "device": "cpu", "network_size": 224,
     "normalization": {"mode": "dtype", "low": 0.0, "high": 255.0, "percentiles": null},
     "hints": {...},                      # only when colour hints were applied
     "date": "2026-11-27T10:12:03Z"}      # UTC

How the record is stored in and read from image files is :mod:`napari_chromagan.files.provenance`,
which also re-exports every name here; import them from there.

The weights' sha256 is cached per (file, size, modification time): hashing the 12 MB demo model
takes about 20 ms, and a folder of images must not pay it per image.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_chromagan import __version__
from napari_chromagan.errors import ChromaGANError
from napari_chromagan.files.checksum import file_sha256

__all__ = [
    "RECORD_KEY",
    "SOFTWARE",
    "STATEMENT",
    "ProvenanceError",
    "clear_hash_cache",
    "describe",
    "from_json",
    "jsonable",
    "make_record",
    "record_for",
    "to_json",
    "weights_sha256",
    "with_hints",
]

SCHEMA = 1
SOFTWARE = "napari-chromagan"
# The PNG iTXt keyword, the key in TIFF's ImageDescription JSON and the layer metadata key.
RECORD_KEY = "napari-chromagan"
STATEMENT = (
    "Colours generated automatically by napari-chromagan (ChromaGAN colourisation): they are a "
    "neural network's guess, not the colours of the original scene."
)
# Arrays in hints larger than this are stored as a digest, not element by element.
_MAX_LISTED_ELEMENTS = 4096
_REQUIRED = ("software", "version", "precision", "normalization", "date")


class ProvenanceError(ChromaGANError, ValueError):
    """A provenance record that cannot be used: damaged, not napari-chromagan's, or not JSON."""


# --------------------------------------------------------------------------- weights digest

_hash_cache: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()
_hash_lock = threading.Lock()
_HASH_CACHE_SIZE = 64


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a weights file (hex), computed once per file version.

    Cached by (real path, inode, size, modification time in ns): a file replaced or rewritten
    is hashed again; the same file is hashed once however many images are written.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    """
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (real, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        found = _hash_cache.get(key)
        if found is not None:
            _hash_cache.move_to_end(key)
            return found
    value = file_sha256(real)  # outside the lock: another thread may hash another file meanwhile
    with _hash_lock:
        _hash_cache[key] = value
        while len(_hash_cache) > _HASH_CACHE_SIZE:
            _hash_cache.popitem(last=False)
    return value


def clear_hash_cache() -> None:
    """Forget the cached weights digests."""
    with _hash_lock:
        _hash_cache.clear()


# --------------------------------------------------------------------------- the record


def jsonable(value: Any) -> Any:
    """``value`` as JSON builtins; large arrays (masks, label images) as a digest of their bytes."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.size > _MAX_LISTED_ELEMENTS:
            data = np.ascontiguousarray(value)
            return {
                "array_sha256": hashlib.sha256(data.tobytes()).hexdigest(),
                "shape": list(data.shape),
                "dtype": str(data.dtype),
            }
        return jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or inf
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ProvenanceError(
        f"cannot record a {type(value).__name__} in a provenance record; pass plain numbers, "
        "strings, lists, dicts or numpy arrays"
    )


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def make_record(
    *,
    weights: str | os.PathLike[str] | None,
    precision: str,
    normalization: Mapping[str, Any],
    device: str | None = None,
    network_size: int | None = None,
    hints: Mapping[str, Any] | None = None,
    date: str | None = None,
) -> dict[str, Any]:
    """Build a provenance record.

    Parameters
    ----------
    weights : path or None
        The weights file (its name and sha256 are recorded); None when the network did not come
        from a file (both are then null).
    precision : {"fp32", "bf16"}
        The arithmetic the network ran in.
    normalization : mapping
        How intensities were mapped to L* (:meth:`Normalization.to_dict`).
    device : str, optional
        Where the network ran ("cpu", "cuda:0"...).
    network_size : int, optional
        The network size the colourizer ran at (the weights' own, or ``Colorizer(network_size=)``).
    hints : mapping, optional
        The colour hints applied, as plain values (numpy arrays allowed: large ones are stored
        as a sha256 with their shape). Omitted from the record when None or empty.
    date : str, optional
        ISO 8601 time of the colourisation; now (UTC) by default.

    Raises
    ------
    FileNotFoundError
        If ``weights`` names a file that does not exist.
    ProvenanceError
        If ``precision`` is not fp32 or bf16, or ``hints`` holds something that is not data.
    """
    if precision not in ("fp32", "bf16"):
        raise ProvenanceError(
            f"precision must be 'fp32' or 'bf16' (what the network ran in), got {precision!r}"
        )
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "software": SOFTWARE,
        "version": __version__,
        "statement": STATEMENT,
        "weights_name": None if weights is None else Path(weights).name,
        "weights_sha256": None if weights is None else weights_sha256(weights),
        "precision": precision,
        "device": device,
        "network_size": network_size,
        "normalization": jsonable(dict(normalization)),
        "date": date or _utc_now(),
    }
    if hints:
        record["hints"] = jsonable(hints)
    return record


def with_hints(record: Mapping[str, Any], hints: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``record`` saying that ``hints`` were applied (stored as :func:`make_record`
    does); ``None`` or empty hints remove the entry. For results changed after colourisation,
    such as a layer that colour hints were applied to."""
    updated = dict(record)
    updated.pop("hints", None)
    if hints:
        updated["hints"] = jsonable(hints)
    return updated


def _precision_of(colorizer: Any) -> str:
    dtype = getattr(colorizer, "autocast_dtype", None)
    return "bf16" if dtype is not None and "bfloat16" in str(dtype) else "fp32"


def record_for(
    colorizer: Any, result: Any, *, hints: Mapping[str, Any] | None = None, date: str | None = None
) -> dict[str, Any]:
    """The record of ``result``, made by ``colorizer`` (a :class:`~napari_chromagan.engine.colorize.Colorizer`).

    The precision and network size are what the colourizer ran at (its bf16 autocast, or
    float32), the weights and device those of ``result``; see :func:`make_record`.
    """
    normalization = result.normalization
    if hasattr(normalization, "to_dict"):
        normalization = normalization.to_dict()
    return make_record(
        weights=getattr(result, "weights", None) or getattr(colorizer, "weights", None),
        precision=_precision_of(colorizer),
        normalization=normalization,
        device=str(getattr(result, "device", None) or getattr(colorizer, "device", "")) or None,
        network_size=getattr(getattr(colorizer, "config", None), "image_size", None),
        hints=hints,
        date=date,
    )


def to_json(record: Mapping[str, Any]) -> str:
    """The record as one line of ASCII JSON (TIFF descriptions must be 7-bit ASCII)."""
    return json.dumps(jsonable(record), ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def from_json(text: str | bytes, *, where: str = "the record") -> dict[str, Any]:
    """Parse a record written by :func:`to_json`.

    Raises
    ------
    ProvenanceError
        If ``text`` is not JSON, or not a napari-chromagan record (other software's metadata,
        or a damaged one).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise ProvenanceError(
            f"{where} is not valid JSON ({exc}); the file's metadata is damaged"
        ) from None
    if not isinstance(record, dict) or record.get("software") != SOFTWARE:
        raise ProvenanceError(f"{where} is not a napari-chromagan provenance record")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise ProvenanceError(f"{where} lacks {', '.join(missing)}; the file's metadata is damaged")
    return record


def describe(record: Mapping[str, Any]) -> list[str]:
    """Readable lines for a record (what ``napari-chromagan info`` prints)."""
    norm = record.get("normalization") or {}
    mode = norm.get("mode", "?")
    if mode == "percentile" and norm.get("percentiles"):
        low_q, high_q = norm["percentiles"]
        how = f"percentiles {low_q:g}-{high_q:g} % (values {norm.get('low', 0):g} to {norm.get('high', 0):g})"
    else:
        how = f"{mode} (values {norm.get('low', 0):g} to {norm.get('high', 0):g})"
    sha = record.get("weights_sha256")
    lines = [
        f"colourised by: {record.get('software')} {record.get('version')}",
        f"statement: {record.get('statement', '')}",
        f"weights: {record.get('weights_name') or '(not from a file)'}"
        + (f" (sha256 {sha})" if sha else ""),
        f"precision: {record.get('precision')}"
        + (f" on {record['device']}" if record.get("device") else "")
        + (f", network size {record['network_size']}" if record.get("network_size") else ""),
        f"normalisation: {how}",
        f"date: {record.get('date')}",
    ]
    hints = record.get("hints")
    lines.append(
        "hints: none" if not hints else f"hints: {json.dumps(hints, sort_keys=True)[:300]}"
    )
    if record.get("blend"):
        lines.append(f"chroma blend: {json.dumps(record['blend'], sort_keys=True)}")
    return lines

"""Provenance: every colourised image says that a machine coloured it, with what and how.

A provenance record is a small JSON-able dict::

    {"schema": 1, "software": "napari-chromagan", "version": "0.1.0",
     "statement": "Colours generated automatically by napari-chromagan ...",
     "weights_name": "chromagan-lite0.pt", "weights_sha256": "6f1c...",
     "precision": "fp32", "device": "cpu",
     "normalization": {"mode": "dtype", "low": 0.0, "high": 255.0, "percentiles": null},
     "hints": {...},                      # only when colour hints were applied
     "date": "2026-11-27T10:12:03Z"}      # UTC

The record travels in each format's own metadata, where standard tools show it:

======  =====================================================================================
PNG     iTXt chunk ``napari-chromagan`` (the JSON); also ``Software``, ``Description`` (the
        statement) and ``Creation Time``
TIFF    the ImageDescription JSON that tifffile writes, under ``napari-chromagan``; also the
        ``Software`` and ``DateTime`` tags
JPEG    a COM (comment) segment holding the JSON; EXIF ``Software``, ``ImageDescription``,
        ``DateTime``
WebP    an XMP packet with the JSON in ``chromagan:provenance``; the same EXIF tags
======  =====================================================================================

:func:`save_options` gives what the writers pass to Pillow or tifffile, :func:`read_provenance`
reads a record back from a file (``napari-chromagan info FILE``). A colourised napari layer holds
the same record (:class:`~napari_chromagan.layer_result.LayerResult`), and the plugin's writer
puts it into the files napari saves.

The weights' sha256 is cached per (file, size, modification time): hashing the 12 MB demo model
takes about 20 ms, and a folder of images must not pay it per image.

No Qt, no napari, no torch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from . import __version__
from .errors import ChromaGANError, UnsupportedImageError

__all__ = [
    "RECORD_KEY",
    "STATEMENT",
    "ProvenanceError",
    "clear_hash_cache",
    "describe",
    "from_json",
    "make_record",
    "read_provenance",
    "record_for",
    "save_options",
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
# A JPEG segment holds at most 65533 bytes (COM); past this the hints are summarised.
_JPEG_COMMENT_LIMIT = 65_000
# Arrays in hints larger than this are stored as a digest, not element by element.
_MAX_LISTED_ELEMENTS = 4096
_XMP_NS = "urn:napari-chromagan:provenance:1"
_RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_REQUIRED = ("software", "version", "precision", "normalization", "date")


class ProvenanceError(ChromaGANError, ValueError):
    """A provenance record that cannot be used: damaged, not napari-chromagan's, or not JSON."""


# --------------------------------------------------------------------------- weights digest

_hash_cache: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()
_hash_lock = threading.Lock()
_HASH_CACHE_SIZE = 64


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    value = _hash_file(real)  # outside the lock: another thread may hash another file meanwhile
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


def _jsonable(value: Any) -> Any:
    """``value`` as JSON builtins; large arrays (masks, label images) as a digest of their bytes."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.size > _MAX_LISTED_ELEMENTS:
            data = np.ascontiguousarray(value)
            return {
                "array_sha256": hashlib.sha256(data.tobytes()).hexdigest(),
                "shape": list(data.shape),
                "dtype": str(data.dtype),
            }
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
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
        "normalization": _jsonable(dict(normalization)),
        "date": date or _utc_now(),
    }
    if hints:
        record["hints"] = _jsonable(hints)
    return record


def with_hints(record: Mapping[str, Any], hints: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``record`` saying that ``hints`` were applied (stored as :func:`make_record`
    does); ``None`` or empty hints remove the entry. For results changed after colourisation,
    such as a layer that colour hints were applied to."""
    updated = dict(record)
    updated.pop("hints", None)
    if hints:
        updated["hints"] = _jsonable(hints)
    return updated


def _precision_of(colorizer: Any) -> str:
    dtype = getattr(colorizer, "autocast_dtype", None)
    return "bf16" if dtype is not None and "bfloat16" in str(dtype) else "fp32"


def record_for(
    colorizer: Any, result: Any, *, hints: Mapping[str, Any] | None = None, date: str | None = None
) -> dict[str, Any]:
    """The record of ``result``, made by ``colorizer`` (a :class:`~napari_chromagan.colorize.Colorizer`).

    The precision is what the colourizer ran in (its bf16 autocast, or float32), the weights
    and device those of ``result``; see :func:`make_record`.
    """
    normalization = result.normalization
    if hasattr(normalization, "to_dict"):
        normalization = normalization.to_dict()
    return make_record(
        weights=getattr(result, "weights", None) or getattr(colorizer, "weights", None),
        precision=_precision_of(colorizer),
        normalization=normalization,
        device=str(getattr(result, "device", None) or getattr(colorizer, "device", "")) or None,
        hints=hints,
        date=date,
    )


def to_json(record: Mapping[str, Any]) -> str:
    """The record as one line of ASCII JSON (TIFF descriptions must be 7-bit ASCII)."""
    return json.dumps(_jsonable(record), ensure_ascii=True, sort_keys=True, separators=(",", ":"))


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
        + (f" on {record['device']}" if record.get("device") else ""),
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


# --------------------------------------------------------------------------- in files


def _exif_time(date: str) -> str:
    """``YYYY:MM:DD HH:MM:SS`` (EXIF's and TIFF's DateTime form) from an ISO 8601 date."""
    try:
        when = _dt.datetime.fromisoformat(date.replace("Z", "+00:00"))
    except ValueError:
        when = _dt.datetime.now(_dt.timezone.utc)
    return when.strftime("%Y:%m:%d %H:%M:%S")


def _software(record: Mapping[str, Any]) -> str:
    return f"{record.get('software', SOFTWARE)} {record.get('version', __version__)}"


def _jpeg_text(record: Mapping[str, Any]) -> str:
    """The JSON for a JPEG comment: the whole record, or with the hints summarised if too large."""
    text = to_json(record)
    if len(text) <= _JPEG_COMMENT_LIMIT or "hints" not in record:
        return text
    full = to_json(record["hints"])
    smaller = dict(record)
    smaller["hints"] = {
        "summarised": f"{len(full)} bytes of hints do not fit in a JPEG comment; write PNG or TIFF to keep them",
        "hints_sha256": hashlib.sha256(full.encode()).hexdigest(),
    }
    return to_json(smaller)


def _xmp_packet(record: Mapping[str, Any]) -> bytes:
    body = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        f'<rdf:RDF xmlns:rdf="{_RDF_NS}">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        f'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:chromagan="{_XMP_NS}" '
        f'xmp:CreatorTool="{escape(_software(record), {chr(34): "&quot;"})}">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(str(record.get("statement", "")))}'
        "</rdf:li></rdf:Alt></dc:description>"
        f"<chromagan:provenance>{escape(to_json(record))}</chromagan:provenance>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )
    return body.encode("utf-8")


def _exif(record: Mapping[str, Any]) -> Any:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0131] = _software(record)  # Software
    exif[0x010E] = str(record.get("statement", STATEMENT))  # ImageDescription
    exif[0x0132] = _exif_time(str(record.get("date", "")))  # DateTime
    return exif


def save_options(ext: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments that store ``record`` in a file of suffix ``ext``.

    For ``.png``, ``.jpg``/``.jpeg`` and ``.webp``: arguments of Pillow's ``Image.save``; for
    ``.tif``/``.tiff``: arguments of ``tifffile.imwrite``.

    Raises
    ------
    ValueError
        For a suffix whose metadata is not written here.
    """
    ext = ext.lower()
    if ext == ".png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Software", _software(record))
        info.add_itxt("Description", str(record.get("statement", STATEMENT)))
        info.add_text("Creation Time", str(record.get("date", "")))
        info.add_itxt(RECORD_KEY, to_json(record), zip=True)
        return {"pnginfo": info}
    if ext in (".jpg", ".jpeg"):
        return {"comment": _jpeg_text(record).encode("ascii"), "exif": _exif(record)}
    if ext == ".webp":
        return {"xmp": _xmp_packet(record), "exif": _exif(record)}
    if ext in (".tif", ".tiff"):
        return {
            "metadata": {RECORD_KEY: _jsonable(record)},
            "software": _software(record),
            "datetime": _exif_time(str(record.get("date", ""))),
        }
    raise ValueError(
        f"cannot store provenance in {ext or 'files without a suffix'}; use .png, .jpg, .webp or .tif"
    )


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _is_ours(text: str | bytes) -> bool:
    """Whether ``text`` is JSON that claims to be a napari-chromagan record (maybe a damaged one)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return False
    return isinstance(value, dict) and value.get("software") == SOFTWARE


def _xmp_record(xmp: bytes | str, where: str) -> dict[str, Any] | None:
    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8", errors="replace")
    match = re.search(r"<x:xmpmeta.*</x:xmpmeta>", xmp, re.S)
    if match is None:
        return None
    try:
        root = ET.fromstring(match.group(0))
    except ET.ParseError as exc:
        raise ProvenanceError(f"{where}: its XMP metadata is damaged ({exc})") from None
    element = root.find(f".//{{{_XMP_NS}}}provenance")
    if element is None or not element.text:
        return None
    return from_json(element.text, where=f"{where}: the XMP record")


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance record stored in an image file, or None when it has none.

    Reads PNG, JPEG, WebP and TIFF files written by napari-chromagan (or by anything that put a
    record where :func:`save_options` does); only the metadata is read, not the pixels.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    UnsupportedImageError
        If the file is not a PNG, JPEG, WebP or TIFF image, or cannot be read.
    ProvenanceError
        If the file holds a record that is damaged.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(12)
    where = str(path)
    if head[:4] in _TIFF_MAGIC:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                descriptions = [tag.value for tag in page.tags if tag.code == 270]
        except Exception as exc:  # tifffile raises many types for damaged files
            raise UnsupportedImageError(f"{path}: cannot read the TIFF's metadata ({exc})") from exc
        for text in descriptions:
            try:
                stored = json.loads(text)
            except (TypeError, ValueError):
                continue  # someone else's free-text description
            if isinstance(stored, dict) and RECORD_KEY in stored:
                return from_json(
                    json.dumps(stored[RECORD_KEY]), where=f"{where}: the ImageDescription record"
                )
        return None
    if not (
        head[:8] == b"\x89PNG\r\n\x1a\n"
        or head[:2] == b"\xff\xd8"
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    ):
        raise UnsupportedImageError(
            f"{path}: not a PNG, JPEG, WebP or TIFF image; provenance is read from those"
        )
    from PIL import Image

    try:
        with Image.open(path) as image:
            info = dict(image.info)
            text = dict(getattr(image, "text", {}) or {}) if image.format == "PNG" else {}
    except Exception as exc:  # Pillow raises many types for damaged files
        raise UnsupportedImageError(f"{path}: cannot read the image's metadata ({exc})") from exc
    if RECORD_KEY in text:
        return from_json(text[RECORD_KEY], where=f"{where}: the PNG text record")
    comment = info.get("comment")
    if comment and _is_ours(comment):
        return from_json(comment, where=f"{where}: the JPEG comment")
    # no comment, or another program's: an XMP record may still be there
    xmp = info.get("xmp")
    if xmp:
        return _xmp_record(xmp, where)
    return None

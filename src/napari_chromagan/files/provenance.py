"""Provenance: every colourised image says that a machine coloured it, with what and how.

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
the same record (:class:`~napari_chromagan.napari.layer_result.LayerResult`), and the plugin's writer
puts it into the files napari saves.

The record itself (what it holds, its JSON form, the weights digest) is built in
:mod:`napari_chromagan.files.provenance_record`; every name of it is re-exported here.

No Qt, no napari, no torch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from napari_chromagan import __version__
from napari_chromagan.errors import UnsupportedImageError
from napari_chromagan.files.provenance_record import (
    RECORD_KEY,
    SOFTWARE,
    STATEMENT,
    ProvenanceError,
    clear_hash_cache,
    describe,
    from_json,
    jsonable,
    make_record,
    record_for,
    to_json,
    weights_sha256,
    with_hints,
)

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

# A JPEG segment holds at most 65533 bytes (COM); past this the hints are summarised.
_JPEG_COMMENT_LIMIT = 65_000
_XMP_NS = "urn:napari-chromagan:provenance:1"
_RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"


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
            "metadata": {RECORD_KEY: jsonable(record)},
            "software": _software(record),
            "datetime": _exif_time(str(record.get("date", ""))),
        }
    raise ValueError(
        f"cannot store provenance in {ext or 'files without a suffix'}; use .png, .jpg, .webp or .tif"
    )


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


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


def _tiff_record(path: Path, where: str) -> dict[str, Any] | None:
    """The record in a TIFF's first-page ImageDescription JSON, or None."""
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


def _pillow_record(path: Path, where: str) -> dict[str, Any] | None:
    """The record in a PNG's text chunks, a JPEG's comment or a WebP's (or JPEG's) XMP, or None."""
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
    if head[:4] in TIFF_MAGIC:
        return _tiff_record(path, where)
    if not (
        head[:8] == b"\x89PNG\r\n\x1a\n"
        or head[:2] == b"\xff\xd8"
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    ):
        raise UnsupportedImageError(
            f"{path}: not a PNG, JPEG, WebP or TIFF image; provenance is read from those"
        )
    return _pillow_record(path, where)

"""Point hints from a CSV file (the command line's ``--hints``): :func:`read_hints_csv`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_chromagan.edit.hint_data import ColorHints
from napari_chromagan.errors import HintError

__all__ = ["read_hints_csv"]


_CSV_COLUMNS = ("x", "y", "plane", "colour", "color", "radius", "file")


def read_hints_csv(path: str | os.PathLike[str], image: str | None = None) -> ColorHints:
    """Point hints from a CSV file, one per row: ``x, y[, plane], colour`` (the command line's
    ``--hints``).

    Parameters
    ----------
    path : path
        The CSV. Without a header, rows are ``x, y, colour`` or ``x, y, plane, colour``; with
        one, its names say which column is which: ``x`` (column, pixels), ``y`` (row, pixels),
        ``plane`` (index on the stack's first axis), ``colour`` or ``color``, ``radius``
        (pixels, default 5) and ``file`` (the input's file name the row is for; rows without
        one are for every input). A colour is ``#rrggbb``, or ``r g b`` in 0-255 (spaces or
        semicolons between). Empty lines and lines starting with ``#`` are skipped.
    image : str, optional
        The input's file name: only rows for it (or for every input) are kept.

    Raises
    ------
    HintError
        With the line number and what is wrong, for a row or header that cannot be read.
    """
    path = Path(path)
    rows = _csv_rows(path)
    names = _header_names(path, rows)
    coords, colours, radii = [], [], []
    with_plane: bool | None = None
    for number, cells in rows:
        parsed = _parse_row(path, number, cells, names, image)
        if parsed is None:
            continue
        position, colour, radius = parsed
        if with_plane is not None and with_plane != (len(position) == 3):
            raise HintError(f"{path}, line {number}: either every row gives a plane or none does")
        with_plane = len(position) == 3
        coords.append(position)
        colours.append(colour)
        radii.append(radius)
    if not coords:
        return ColorHints.from_points(np.zeros((0, 2)), np.zeros((0, 3)))
    return ColorHints.from_points(np.asarray(coords), np.asarray(colours, np.uint8), radius=radii)


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped cells) of every row that is neither empty nor a ``#`` comment."""
    import csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise HintError(f"cannot read the hints file {path}: {exc.strerror or exc}") from None
    return [
        (number, [cell.strip() for cell in row])
        for number, row in enumerate(csv.reader(text.splitlines()), start=1)
        if row and any(cell.strip() for cell in row) and not row[0].strip().startswith("#")
    ]


def _header_names(path: Path, rows: list[tuple[int, list[str]]]) -> list[str]:
    """The header's column names ("color" read as "colour"), popped from ``rows``; [] without one."""
    if not rows or _is_number(rows[0][1][0]):
        return []
    number, header = rows.pop(0)
    names = [name.lower() for name in header]
    unknown = [name for name in names if name not in _CSV_COLUMNS]
    if unknown or "x" not in names or "y" not in names or not {"colour", "color"} & set(names):
        raise HintError(
            f"{path}, line {number}: the header must name x, y and colour (and may name plane, "
            f"radius, file); got {', '.join(header)}"
        )
    return ["colour" if name == "color" else name for name in names]


def _parse_row(
    path: Path, number: int, cells: list[str], names: list[str], image: str | None
) -> tuple[list[float], tuple[int, int, int], float] | None:
    """One row's ([plane,] row, col), colour and radius; None for a row for another file."""
    columns = names or (["x", "y", "colour"] if len(cells) == 3 else ["x", "y", "plane", "colour"])
    if len(cells) != len(columns):
        raise HintError(
            f"{path}, line {number}: {len(cells)} values; expected {len(columns)} ({', '.join(columns)})"
        )
    row = dict(zip(columns, cells, strict=True))
    if image is not None and row.get("file") and Path(row["file"]).name != Path(image).name:
        return None
    try:
        position = [float(row["y"]), float(row["x"])]
        if row.get("plane", "") != "":
            position.insert(0, float(row["plane"]))
        colour = _parse_colour(row["colour"])
        radius = float(row["radius"]) if row.get("radius", "") != "" else 5.0
    except ValueError as exc:
        raise HintError(f"{path}, line {number}: {exc}") from None
    return position, colour, radius


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_colour(text: str) -> tuple[int, int, int]:
    """'#rrggbb' or 'r g b' (0-255) -> (r, g, b)."""
    value = text.strip()
    if value.startswith("#") and len(value) == 7:
        try:
            return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)
        except ValueError:
            pass
    parts = value.replace(";", " ").split()
    if len(parts) == 3 and all(p.isdigit() and int(p) <= 255 for p in parts):
        return int(parts[0]), int(parts[1]), int(parts[2])
    raise ValueError(f"colour {text!r} is neither #rrggbb nor 'r g b' with values 0-255")

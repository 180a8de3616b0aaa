"""Output file names for the ``napari-chromagan colorize`` command line (no Qt, no torch).

:func:`output_path` names the output of one input (``<stem>_colorized<ext>``);
:func:`output_paths` names those of many, never twice the same. Both are re-exported by
:mod:`napari_chromagan.files.imageio`, which reads and writes the files.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["output_path", "output_paths"]

_FORMAT_SUFFIXES = {
    "png": ".png",
    "jpg": ".jpg",
    "jpeg": ".jpg",
    "tif": ".tif",
    "tiff": ".tif",
    "webp": ".webp",
}


def output_path(
    input_path: Path, out_dir: Path, suffix: str | None = None, tag: str = "_colorized"
) -> Path:
    """Name the output file of one input: ``<out_dir>/<stem><tag><ext>``.

    Parameters
    ----------
    input_path : Path
        The input file.
    out_dir : Path
        The output folder.
    suffix : str, optional
        Output format: ``png``, ``jpg``/``jpeg``, ``tif``/``tiff`` or ``webp``, with or
        without a dot, any case. By default TIFF inputs give ``.tif``, JPEG inputs ``.jpg``
        and all others ``.png``.
    tag : str
        Text appended to the input's stem.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        If `suffix` is not one of the formats above.
    """
    if suffix is not None:
        ext = _FORMAT_SUFFIXES.get(suffix.lower().lstrip("."))
        if ext is None:
            raise ValueError(
                f"unsupported output format {suffix!r}; choose png, jpeg, tiff or webp"
            )
    else:
        ext = {".tif": ".tif", ".tiff": ".tif", ".jpg": ".jpg", ".jpeg": ".jpg"}.get(
            Path(input_path).suffix.lower(), ".png"
        )
    return Path(out_dir) / f"{Path(input_path).stem}{tag}{ext}"


def output_paths(
    inputs: list[Path],
    out_dir: Path,
    suffix: str | None = None,
    roots: list[Path] | None = None,
    tag: str = "_colorized",
) -> list[Path]:
    """Name the output files of several inputs, never twice the same.

    Inputs whose plain names (see `output_path`) collide, case-insensitively, are named after
    their path relative to the deepest of `roots` that holds them (or else to the common
    folder of the colliding inputs), folders joined with ``__``: ``a/x.png`` and ``b/x.png``
    give ``a__x_colorized.png`` and ``b__x_colorized.png``. Names still equal after that get
    ``_2``, ``_3``... in input order.

    Parameters
    ----------
    inputs : list of Path
        The input files, as returned by `collect_inputs`.
    out_dir : Path
        The output folder.
    suffix : str, optional
        Output format, as for `output_path`.
    roots : list of Path, optional
        The folders the inputs were searched in.
    tag : str
        Text appended to each input's stem.

    Returns
    -------
    list of Path
        One output path per input, in the same order.
    """
    names = [output_path(p, out_dir, suffix, tag).name for p in inputs]
    folded = [n.casefold() for n in names]
    clashing = [i for i, n in enumerate(folded) if folded.count(n) > 1]
    if clashing:
        try:
            common = os.path.commonpath([os.path.abspath(inputs[i]) for i in clashing])
        except ValueError:  # different drives
            common = None
        for i in clashing:
            rel = _relative(inputs[i], roots or [], common)
            names[i] = "__".join([*rel.parent.parts, rel.stem]) + tag + Path(names[i]).suffix
    taken: set[str] = set()
    for i, name in enumerate(names):
        stem, ext = os.path.splitext(name)
        number = 2
        while name.casefold() in taken:
            name = f"{stem}_{number}{ext}"
            number += 1
        taken.add(name.casefold())
        names[i] = name
    return [Path(out_dir) / name for name in names]


def _relative(path: Path, roots: list[Path], common: str | None) -> Path:
    absolute = Path(os.path.abspath(path))
    holders = [Path(os.path.abspath(r)) for r in roots]
    holders = [r for r in holders if absolute.is_relative_to(r) and absolute != r]
    if holders:
        return absolute.relative_to(max(holders, key=lambda r: len(r.parts)))
    if common is not None and absolute != Path(common):
        return absolute.relative_to(common)
    return Path(absolute.name)

"""Evaluate a colouriser on a folder of colour photographs: ``python -m training evaluate``.

Two measurements per image, each against the "no colour" floor (the gray image with the same
lightness), since a colouriser that does not beat the floor has learnt nothing:

* **The authors' protocol at S x S** (docs/model.md, "Evaluation"; S = the model's
  ``image_size``, 224 for the real model). The 8-bit RGB image is squashed to S x S (anisotropic,
  bilinear without antialiasing, like ``cv2.resize`` INTER_LINEAR) and converted to Lab. Its L
  goes through the network; the truth is Lab -> RGB of (L, ab_truth), the prediction Lab -> RGB
  of (L, ab_pred), the floor Lab -> RGB of (L, 0): the same L in all three, so only chroma is
  scored. PSNR, SSIM and colourfulness of each.
* **Full resolution, as the plugin delivers it**: the original image's L* through
  :meth:`Colorizer.colorize` (L* at full resolution + bilinearly upsampled ab) against the
  original RGB file; the floor is the gray image of the same L*.

Differences from the authors' script, all on purpose:

* Lab is computed in floating point (skimage's D65 formulas), not with OpenCV's 8-bit Lab, so L
  and the truth's ab are not quantised to 8 bits before scoring; the truth is then the resized
  image itself up to rounding, rather than an 8-bit Lab round trip of it.
* Predicted ab is kept in floating point (the authors truncated ``255 * s`` to uint8, a bias of
  half a unit), and out-of-gamut colours are brought into sRGB as the plugin does it:
  :func:`~napari_chromagan.color.render.render_lab` shrinks chroma at constant L* and hue, then
  rounds. OpenCV's Lab2BGR instead clips R, G and B, which shifts L*.
* SSIM is skimage's with the Wang et al. settings (11x11 Gaussian, sigma 1.5), which is what
  ``tf.image.ssim`` computes; PSNR is per image over all channels, averaged over images, as
  ``tf.image.psnr`` and the authors did.

Gray files (2D, or RGB whose channels differ by at most ``training.data.GRAY_TOLERANCE``)
have no colour truth: they are skipped and counted. Files that cannot be read, or are smaller than 11 pixels on a side (too small for
SSIM), are skipped, counted as unreadable and logged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from napari_chromagan.argtypes import positive_int, size_multiple_of_32
from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.errors import ChromaGANError, cli_text

from .images import find_images, load_colour_image
from .metrics import psnr, ssim
from .report import PER_IMAGE_CSV, SUMMARY_JSON, check_out, csv_text, format_table, write_atomic
from .scoring import full_resolution, score_network_size, squash, summarise

__all__ = [
    "EvaluationError",
    "evaluate",
    "format_table",
    "load_colour_image",
    "register",
    "run",
    "score_network_size",
    "squash",
]


class EvaluationError(ChromaGANError, ValueError):
    """Nothing could be evaluated (no colour image among the inputs)."""


# ---------------------------------------------------------------------------------------------
# inputs


def _find_inputs(data: str | os.PathLike[str]) -> tuple[list[Path], Path]:
    """The image files named by ``data`` (see :func:`training.data.find_images`) and the folder
    their names are shown relative to."""
    try:
        files = find_images(data)
    except ValueError as exc:  # no images found, an empty list file, or one that is not text
        raise EvaluationError(str(exc)) from None
    source = Path(data)
    return files, source if source.is_dir() else source.parent


# ---------------------------------------------------------------------------------------------
# scoring


def _score_batch(
    colorizer: Colorizer, batch: list[tuple[str, np.ndarray]], size: int, teacher: Any = None
) -> list[dict[str, Any]]:
    """Score a batch of (name, uint8 RGB) images: the S x S protocol, then full resolution.

    With a ``teacher`` (training.teacher.Teacher), each row also says whether the class head's
    top-1 is among the teacher's top 5 for the colour image.
    """
    scores = score_network_size(colorizer, [rgb for _, rgb in batch], size, teacher)
    rows = []
    for (name, rgb), at_size in zip(batch, scores, strict=True):
        full, full_floor = full_resolution(colorizer, rgb)
        row = {"file": name, "width": rgb.shape[1], "height": rgb.shape[0], **at_size}
        row.update(
            psnr_full=psnr(full, rgb),
            psnr_full_floor=psnr(full_floor, rgb),
            ssim_full=ssim(full, rgb),
            ssim_full_floor=ssim(full_floor, rgb),
        )
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# the API


def evaluate(
    weights: str | os.PathLike[str] | Colorizer,
    data: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    device: str = "auto",
    batch_size: int = 8,
    overwrite: bool = False,
    progress: bool = True,
    size: int | None = None,
    teacher: str | None = None,
    network_size: int | None = None,
) -> dict[str, Any]:
    """Score a colouriser against the truth and the no-colour floor on a set of colour images.

    Parameters
    ----------
    weights : path or Colorizer
        A napari-chromagan checkpoint (exported or written by training), or a ready Colorizer
        (then ``device`` is ignored).
    data : path
        A folder of images (recursive), a list file (one path per line, relative to the list
        file), or one image.
    out : path, optional
        Folder for ``per_image.csv`` and ``summary.json`` (created if needed).
    limit : int, optional
        Score at most this many images (gray and unreadable files do not count).
    device : str
        "auto", "cpu", "cuda", "cuda:N" or "mps".
    batch_size : int
        Images per network call in the S x S protocol.
    overwrite : bool
        Replace existing outputs in ``out``; otherwise their presence raises FileExistsError
        before any work is done.
    progress : bool
        Show a progress bar on stderr.
    size : int, optional
        The square size of the protocol (default: the network's own).
    teacher : str, optional
        An ImageNet classifier (``efficientnet-lite0`` or a file, as ``train --teacher``): also
        measure how often the class head's top-1 is among the teacher's top 5 on the colour image.
    network_size : int, optional
        Run the network at this size instead of the weights' own (``Colorizer(network_size=)``;
        EfficientNet-family weights only). ``size`` defaults to it too: pass ``size`` to score
        several network sizes in one protocol. Not with a ready Colorizer, which has its own.

    Returns
    -------
    dict
        ``{"weights", "data", "images", "skipped_gray", "unreadable", "metrics", "image_size",
        "network_size", "device", "date"}``; ``metrics`` as :func:`training.scoring.summarise`
        says (PSNR in dB, SSIM, colourfulness, ΔCF and the mean a*, b*, each beside the floor).

    Raises
    ------
    FileNotFoundError
        ``data`` does not exist (or a list file's first entries do not).
    FileExistsError
        An output exists and ``overwrite`` is false (checked before any work).
    OutputError
        ``out`` is a file or cannot be written (checked before any work).
    EvaluationError
        ``data`` holds no image files, or none of them is a readable colour image.
    CheckpointError, WeightsNotFoundError, DeviceError
        From loading the weights.
    """
    _check_counts(batch_size, limit)
    files, root = _find_inputs(data)
    out_dir = None if out is None else Path(out)
    if out_dir is not None:
        check_out(out_dir, overwrite)  # fail before the work, not after it
    colorizer = _colorizer(weights, device, network_size)
    size, judge = _protocol(colorizer, size, teacher)
    todo = files, root, limit, batch_size
    rows, skipped = _score_files(colorizer, todo, size, judge, progress)
    if not rows:
        raise EvaluationError(
            f"no colour image to evaluate in {data}: {skipped['gray']} gray and "
            f"{skipped['unreadable']} unreadable file(s); evaluation needs colour photographs"
        )
    summary = _summary(weights, data, colorizer, rows, skipped, size)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(out_dir / PER_IMAGE_CSV, csv_text(rows, size), overwrite)
        write_atomic(out_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n", overwrite)
    return summary


def _protocol(colorizer: Colorizer, size: int | None, teacher: str | None) -> tuple[int, Any]:
    """The protocol's square size (default the network's) and the teacher judging the class head."""
    if size is None:
        size = colorizer.config.image_size
    elif size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    judge = None
    if teacher is not None:
        from .teacher import load_teacher

        judge = load_teacher(teacher, "colour").to(colorizer.device)
    return size, judge


def _check_counts(batch_size: int, limit: int | None) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")


def _colorizer(
    weights: str | os.PathLike[str] | Colorizer, device: str, network_size: int | None
) -> Colorizer:
    if isinstance(weights, Colorizer):
        weights.require_network_size(network_size)
        return weights
    # float32: the protocol measures the weights, whatever precision the engine would
    # pick by default on this device (bf16 on CPUs with native bf16); validation during
    # training scores in float32 too, so the two agree
    return Colorizer.from_checkpoint(weights, device, precision="fp32", network_size=network_size)


def _score_files(
    colorizer: Colorizer,
    todo: tuple[list[Path], Path, int | None, int],
    size: int,
    judge: Any,
    progress: bool,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Score the colour images among ``files`` (``todo`` = files, root, limit, batch size) in
    batches; returns their rows and the count of gray and unreadable files skipped."""
    files, root, limit, batch_size = todo
    rows: list[dict[str, Any]] = []
    skipped = {"gray": 0, "unreadable": 0}
    batch: list[tuple[str, np.ndarray]] = []
    total = len(files) if limit is None else min(limit, len(files))
    with tqdm(total=total, desc="evaluate", unit="image", disable=not progress) as bar:
        for path in files:
            if limit is not None and len(rows) + len(batch) >= limit:
                break
            rgb, why = load_colour_image(path)
            if rgb is None:
                skipped[why] += 1
                continue
            batch.append((_display_name(path, root), rgb))
            if len(batch) == batch_size:
                rows.extend(_score_batch(colorizer, batch, size, judge))
                bar.update(len(batch))
                batch = []
        if batch:
            rows.extend(_score_batch(colorizer, batch, size, judge))
            bar.update(len(batch))
    return rows, skipped


def _summary(
    weights: str | os.PathLike[str] | Colorizer,
    data: str | os.PathLike[str],
    colorizer: Colorizer,
    rows: list[dict[str, Any]],
    skipped: dict[str, int],
    size: int,
) -> dict[str, Any]:
    return {
        "weights": colorizer.weights if isinstance(weights, Colorizer) else str(weights),
        "data": str(data),
        "images": len(rows),
        "skipped_gray": skipped["gray"],
        "unreadable": skipped["unreadable"],
        "metrics": summarise(rows, size),
        "image_size": size,
        "network_size": colorizer.config.image_size,
        "device": str(colorizer.device),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _display_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # an absolute entry of a list file, elsewhere
        return str(path)


# ---------------------------------------------------------------------------------------------
# command line


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` command to an ``argparse`` subparsers object (sets ``func=run``)."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score weights on colour photographs against the no-colour floor",
        description=(
            "Score a colouriser on colour photographs: PSNR and SSIM at the network size (the "
            "authors' protocol: same L in prediction and truth) and at full resolution (the "
            "plugin's output), colourfulness, each beside the no-colour floor (the gray "
            "image). Gray and unreadable files are skipped and counted."
        ),
    )
    parser.add_argument(
        "--weights", required=True, metavar="W",
        help="a napari-chromagan checkpoint (.pt): exported, imported or written by training",
    )  # fmt: skip
    parser.add_argument(
        "--data", required=True, metavar="DIR|LIST",
        help="a folder of images (searched recursively) or a text file listing one image per line",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="write per_image.csv and summary.json here"
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="score at most N colour images"
    )
    parser.add_argument(
        "--device", default="auto", metavar="D",
        help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, metavar="B",
        help="images per network call (default 8)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs in --out"
    )
    parser.add_argument(
        "--size", type=positive_int, default=None, metavar="S",
        help="the square size of the authors' protocol (default: the network's own; 224 compares with the paper)",
    )  # fmt: skip
    parser.add_argument(
        "--teacher", metavar="T",
        help="also score the class head against this ImageNet classifier on the colour image "
             "(efficientnet-lite0, or a file as for train --teacher)",
    )  # fmt: skip
    parser.add_argument(
        "--network-size", type=size_multiple_of_32, metavar="S",
        help="run the network at this size, a multiple of 32 (default: the weights' own; "
             "EfficientNet-family weights only); also the default --size: give --size 224 to "
             "compare network sizes in one protocol",
    )  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate`` from parsed arguments, print the table; 0 on success, 2 on a known error."""
    try:
        summary = evaluate(
            args.weights,
            args.data,
            out=args.out,
            limit=args.limit,
            device=args.device,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            progress=not args.quiet,
            size=args.size,
            teacher=args.teacher,
            network_size=args.network_size,
        )
    except (ChromaGANError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {cli_text(exc)}", file=sys.stderr)
        return 2
    print(format_table(summary))
    if args.out is not None:
        print(f"\nwrote {Path(args.out) / PER_IMAGE_CSV} and {Path(args.out) / SUMMARY_JSON}")
    return 0

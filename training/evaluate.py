"""Evaluate a colouriser on a folder of colour photographs: ``python -m training evaluate``.

Two measurements per image, each against the "no colour" floor (the gray image with the same
lightness), since a colouriser that does not beat the floor has learnt nothing:

* **The authors' protocol at S x S** (docs: chromagan-spec.md §4.2; S = the model's
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
  :func:`~napari_chromagan.render.render_lab` shrinks chroma at constant L* and hue, then
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
import csv
import io
import json
import logging
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from napari_chromagan.argtypes import positive_int
from napari_chromagan.atomic import atomic_write_text, check_writable
from napari_chromagan.color import lab_to_rgb_uint8, rgb_to_lab, rgb_to_luminance_L
from napari_chromagan.colorize import Colorizer
from napari_chromagan.errors import ChromaGANError, OutputError, UnsupportedImageError
from napari_chromagan.imageio import read_image
from napari_chromagan.render import render_lab

from .data import find_images, is_gray
from .metrics import SSIM_MIN_SIZE, colourfulness, psnr, ssim

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

log = logging.getLogger(__name__)

PER_IMAGE_CSV = "per_image.csv"
SUMMARY_JSON = "summary.json"


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


def load_colour_image(path: Path) -> tuple[np.ndarray | None, str]:
    """Read ``path`` as uint8 (H, W, 3); returns (rgb, "") or (None, "gray" | "unreadable").

    Gray files (see the module docstring), unreadable ones and those too small for SSIM are
    refused with the reason (logged for the unreadable ones); training's validation uses it too.
    """
    try:
        image = read_image(path)
    except (UnsupportedImageError, OSError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None, "unreadable"
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 2)):
        return None, "gray"
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        log.warning("skipping %s: not a single RGB image (array of shape %s)", path, image.shape)
        return None, "unreadable"
    rgb = image[..., :3]
    if rgb.dtype == np.uint16:
        rgb = np.round(rgb / 257.0).astype(np.uint8)
    elif rgb.dtype != np.uint8:
        log.warning("skipping %s: expected 8- or 16-bit RGB, got %s", path, rgb.dtype)
        return None, "unreadable"
    if is_gray(rgb):  # the training data's definition of a gray file
        return None, "gray"
    if min(rgb.shape[:2]) < SSIM_MIN_SIZE:
        log.warning(
            "skipping %s: %dx%d is too small to score (SSIM needs %d pixels a side)",
            path, rgb.shape[1], rgb.shape[0], SSIM_MIN_SIZE,
        )  # fmt: skip
        return None, "unreadable"
    return np.ascontiguousarray(rgb), ""


# ---------------------------------------------------------------------------------------------
# scoring


def squash(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: anisotropic bilinear, no antialiasing (cv2's)."""
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return t[0].permute(1, 2, 0).add_(0.5).floor_().clamp_(0, 255).to(torch.uint8).numpy()


def _lab_to_rgb8(L: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
    """L (N, S, S) and ab (N, 2, S, S) -> uint8 RGB (N, S, S, 3), gamut-fitted as the plugin does."""
    return render_lab(L, ab, dim=-3).permute(0, 2, 3, 1).cpu().numpy()


def _predict_at(
    colorizer: Colorizer, L: torch.Tensor, size: int, with_class: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predicted ab (N, 2, S, S) for L (N, S, S) in L* units, and the class distribution if asked.

    At the network's own size this is one network call, as the authors. At another size (a
    128-pixel model scored in the 224 protocol) the L is resized to the network (antialiased) and
    the chroma bilinearly back, as the plugin's engine does.
    """
    x = (L / 100.0)[:, None].float()
    model_size = colorizer.config.image_size
    if size == model_size:
        return colorizer.predict(x, with_class=with_class)
    small = F.interpolate(
        x, size=(model_size, model_size), mode="bilinear", align_corners=False, antialias=True
    )
    ab, probs = colorizer.predict(small.clamp_(0.0, 1.0), with_class=with_class)
    return F.interpolate(ab, size=(size, size), mode="bilinear", align_corners=False), probs


def score_network_size(
    colorizer: Colorizer, images: list[np.ndarray], size: int | None = None, teacher: Any = None
) -> list[dict[str, float]]:
    """The authors' protocol at ``size`` x ``size`` for uint8 RGB (H, W, 3) ``images``: one network call.

    Each image is squashed to the size (an image already that size is kept as it is); returns one
    dict per image with ``psnr_S``, ``psnr_S_floor``, ``ssim_S``, ``ssim_S_floor`` (S = ``size``,
    default the network's), ``cf``, ``cf_truth``, ``cf_floor`` (colourfulness), the mean a*, b*
    (``a_mean``, ``a_mean_truth``, ``b_mean``, ``b_mean_truth``) and, with a ``teacher``
    (training.teacher.Teacher), ``class_top1_in_teacher_top5``. Training's validation scores
    its held-out images with this.
    """
    size = colorizer.config.image_size if size is None else size
    small = torch.from_numpy(
        np.stack([rgb if rgb.shape[:2] == (size, size) else squash(rgb, size) for rgb in images])
    )
    lab = rgb_to_lab(small.double() / 255.0, dim=-1)  # (N, S, S, 3) float64
    L = lab[..., 0]
    ab_truth = lab[..., 1:].permute(0, 3, 1, 2)
    ab_pred, probs = _predict_at(colorizer, L, size, with_class=teacher is not None)
    agree: dict[str, list[bool]] = {}
    if teacher is not None:
        top1 = probs.cpu().argmax(dim=1, keepdim=True)
        rgb = small.permute(0, 3, 1, 2).float() / 255.0
        sizes = {"class_top1_in_teacher_top5": size}
        if (
            colorizer.config.image_size != size
        ):  # also as in training: the teacher at the network's size
            sizes["class_top1_in_teacher_top5_at_network_size"] = colorizer.config.image_size
        for key, side in sizes.items():
            seen = (
                rgb
                if side == size
                else F.interpolate(
                    rgb, size=(side, side), mode="bilinear", align_corners=False, antialias=True
                ).clamp_(0.0, 1.0)
            )
            top5 = (
                teacher(torch.zeros_like(seen[:, :1]), seen.to(colorizer.device))
                .cpu()
                .topk(5, dim=1)
                .indices
            )
            agree[key] = (top5 == top1).any(dim=1).tolist()
    ab_mean_pred = ab_pred.double().cpu().mean(dim=(2, 3))  # (N, 2): a*, b*
    ab_mean_truth = ab_truth.mean(dim=(2, 3))
    truth = _lab_to_rgb8(L, ab_truth)
    pred = _lab_to_rgb8(L, ab_pred.double().cpu())
    floor = _lab_to_rgb8(L, torch.zeros_like(ab_truth))
    rows = []
    for i in range(len(images)):
        rows.append(
            {
                f"psnr_{size}": psnr(pred[i], truth[i]),
                f"psnr_{size}_floor": psnr(floor[i], truth[i]),
                f"ssim_{size}": ssim(pred[i], truth[i]),
                f"ssim_{size}_floor": ssim(floor[i], truth[i]),
                "cf": colourfulness(pred[i]),
                "cf_truth": colourfulness(truth[i]),
                "cf_floor": colourfulness(floor[i]),
                "a_mean": float(ab_mean_pred[i, 0]),
                "a_mean_truth": float(ab_mean_truth[i, 0]),
                "b_mean": float(ab_mean_pred[i, 1]),
                "b_mean_truth": float(ab_mean_truth[i, 1]),
                **{key: float(values[i]) for key, values in agree.items()},
            }
        )
    return rows


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
        full, full_floor = _full_resolution(colorizer, rgb)
        row = {"file": name, "width": rgb.shape[1], "height": rgb.shape[0], **at_size}
        row.update(
            psnr_full=psnr(full, rgb),
            psnr_full_floor=psnr(full_floor, rgb),
            ssim_full=ssim(full, rgb),
            ssim_full_floor=ssim(full_floor, rgb),
        )
        rows.append(row)
    return rows


def _full_resolution(colorizer: Colorizer, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plugin's full-resolution output for the image's own L*, and the gray floor of that L*."""
    L = rgb_to_luminance_L(torch.from_numpy(rgb).float() / 255.0, dim=-1)  # (H, W) float32
    result = colorizer.colorize(
        L.numpy(), normalization="manual", value_range=(0.0, 100.0), rgb=False, with_class=False
    )
    floor = lab_to_rgb_uint8(
        torch.stack([L, torch.zeros_like(L), torch.zeros_like(L)], dim=-1), dim=-1
    )
    return result.rgb, floor.numpy()


def _columns(size: int, with_class: bool = False) -> list[str]:
    return [
        "file", "width", "height",
        f"psnr_{size}", f"psnr_{size}_floor", f"ssim_{size}", f"ssim_{size}_floor",
        "psnr_full", "psnr_full_floor", "ssim_full", "ssim_full_floor",
        "cf", "cf_truth", "cf_floor", "a_mean", "a_mean_truth", "b_mean", "b_mean_truth",
    ] + (["class_top1_in_teacher_top5", "class_top1_in_teacher_top5_at_network_size"] if with_class else [])  # fmt: skip


def _summarise(rows: list[dict[str, Any]], size: int) -> dict[str, Any]:
    def mean(key: str) -> float:
        return float(np.mean([row[key] for row in rows]))

    def mean_delta(key: str) -> float:
        return float(np.mean([row[key] - row["cf_truth"] for row in rows]))

    metrics: dict[str, dict[str, float]] = {}
    for name in (f"psnr_{size}", f"ssim_{size}", "psnr_full", "ssim_full"):
        metrics[name] = {"model": mean(name), "floor": mean(f"{name}_floor")}
    metrics["colourfulness"] = {
        "model": mean("cf"),
        "truth": mean("cf_truth"),
        "floor": mean("cf_floor"),
    }
    metrics["delta_cf"] = {"model": mean_delta("cf"), "floor": mean_delta("cf_floor")}
    # a colour cast (sepia) shows as mean a*, b* away from the truth's
    for channel in ("a", "b"):
        metrics[f"{channel}_mean"] = {
            "model": mean(f"{channel}_mean"),
            "truth": mean(f"{channel}_mean_truth"),
            "floor": 0.0,
        }
    for key in ("class_top1_in_teacher_top5", "class_top1_in_teacher_top5_at_network_size"):
        if rows and key in rows[0]:
            metrics[key] = {"model": mean(key)}
    return metrics


# ---------------------------------------------------------------------------------------------
# outputs


def _check_out(out: Path, overwrite: bool) -> None:
    """Fail before the scoring, not after it: a file in the way, a read-only folder, outputs that exist."""
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"--out {out} is a file, not a folder: choose a folder for {PER_IMAGE_CSV} and "
            f"{SUMMARY_JSON} (it is created if missing)"
        )
    check_writable(out, what="--out", fix="choose another --out folder, or make this one writable")
    if overwrite:
        return
    for name in (PER_IMAGE_CSV, SUMMARY_JSON):
        if (out / name).exists():
            raise FileExistsError(f"{out / name} exists; pass --overwrite to replace it")


def _write_atomic(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync, then rename it over ``path``."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    atomic_write_text(path, text)


def _csv_text(rows: list[dict[str, Any]], size: int) -> str:
    buffer = io.StringIO()
    with_class = bool(rows) and "class_top1_in_teacher_top5" in rows[0]
    writer = csv.DictWriter(buffer, fieldnames=_columns(size, with_class), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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

    Returns
    -------
    dict
        ``{"weights", "data", "images", "skipped_gray", "unreadable", "metrics", "image_size",
        "device", "date"}``. ``metrics`` maps ``psnr_S``, ``ssim_S`` (S = ``image_size``),
        ``psnr_full`` and ``ssim_full`` to ``{"model": mean, "floor": mean}``,
        ``colourfulness`` to ``{"model", "truth", "floor"}`` (means, at S x S), and
        ``delta_cf`` to the mean ΔCF = CF - CF(truth) of ``{"model", "floor"}``, ``a_mean`` and
        ``b_mean`` to the mean a*, b* of ``{"model", "truth", "floor"}`` (a cast shows there), and
        with a teacher ``class_top1_in_teacher_top5`` to ``{"model": fraction}``. PSNR in dB
        (``inf`` for a perfect image, which then makes the mean ``inf``).

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
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    files, root = _find_inputs(data)
    out_dir = None if out is None else Path(out)
    if out_dir is not None:
        _check_out(out_dir, overwrite)  # fail before the work, not after it
    if isinstance(weights, Colorizer):
        colorizer = weights
    else:
        # float32: the protocol measures the weights, whatever precision the engine would
        # pick by default on this device (bf16 on CPUs with native bf16); validation during
        # training scores in float32 too, so the two agree
        colorizer = Colorizer.from_checkpoint(weights, device, precision="fp32")
    if size is None:
        size = colorizer.config.image_size
    elif size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    judge = None
    if teacher is not None:
        from .teacher import load_teacher

        judge = load_teacher(teacher, "colour").to(colorizer.device)

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
    if not rows:
        raise EvaluationError(
            f"no colour image to evaluate in {data}: {skipped['gray']} gray and "
            f"{skipped['unreadable']} unreadable file(s); evaluation needs colour photographs"
        )

    summary: dict[str, Any] = {
        "weights": colorizer.weights if isinstance(weights, Colorizer) else str(weights),
        "data": str(data),
        "images": len(rows),
        "skipped_gray": skipped["gray"],
        "unreadable": skipped["unreadable"],
        "metrics": _summarise(rows, size),
        "image_size": size,
        "network_size": colorizer.config.image_size,
        "device": str(colorizer.device),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(out_dir / PER_IMAGE_CSV, _csv_text(rows, size), overwrite)
        _write_atomic(out_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n", overwrite)
    return summary


def _display_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # an absolute entry of a list file, elsewhere
        return str(path)


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table of :func:`evaluate`'s summary: metric | model | floor | difference."""
    size = summary["image_size"]
    m = summary["metrics"]
    lines = [
        (
            f"{summary['images']} image(s) scored from {summary['data']} "
            f"({summary['skipped_gray']} gray skipped, {summary['unreadable']} unreadable); "
            f"protocol at {size}x{size}, network at {summary.get('network_size', size)} px, on {summary['device']}"
        ),
        f"weights: {summary['weights']}",
        "",
    ]
    table = [
        (f"PSNR {size}x{size} (dB)", m[f"psnr_{size}"], "{:.2f}"),
        (f"SSIM {size}x{size}", m[f"ssim_{size}"], "{:.4f}"),
        ("PSNR full res (dB)", m["psnr_full"], "{:.2f}"),
        ("SSIM full res", m["ssim_full"], "{:.4f}"),
        ("colourfulness", m["colourfulness"], "{:.2f}"),
        ("delta CF vs truth", m["delta_cf"], "{:.2f}"),
    ]
    header = ("metric", "model", "no-colour floor", "difference")
    cells = [header] + [
        (
            name,
            fmt.format(v["model"]),
            fmt.format(v["floor"]),
            _signed(fmt, v["model"] - v["floor"]),
        )
        for name, v, fmt in table
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    for j, row in enumerate(cells):
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join([first, *rest]))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [
        "",
        (
            f"colourfulness of the truth: {m['colourfulness']['truth']:.2f} "
            "(Hasler & Susstrunk M3, at the network size; delta CF < 0 means duller than the truth)"
        ),
    ]
    if "a_mean" in m:
        lines.append(
            f"mean a*, b*: model {m['a_mean']['model']:+.2f}, {m['b_mean']['model']:+.2f}; truth "
            f"{m['a_mean']['truth']:+.2f}, {m['b_mean']['truth']:+.2f} (a cast shows as a difference)"
        )
    if "class_top1_in_teacher_top5" in m:
        line = (
            f"class head: top-1 among the teacher's top 5 on {100 * m['class_top1_in_teacher_top5']['model']:.1f} % "
            f"of the images (teacher on the colour image at {size} px"
        )
        if "class_top1_in_teacher_top5_at_network_size" in m:
            line += (
                f"; {100 * m['class_top1_in_teacher_top5_at_network_size']['model']:.1f} % with the teacher at the "
                f"network's {summary.get('network_size')} px, as in training"
            )
        lines.append(line + ")")
    return "\n".join(lines)


def _signed(fmt: str, value: float) -> str:
    text = fmt.format(value)
    return text if text.startswith("-") or math.isnan(value) else "+" + text


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
        )
    except (ChromaGANError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(summary))
    if args.out is not None:
        print(f"\nwrote {Path(args.out) / PER_IMAGE_CSV} and {Path(args.out) / SUMMARY_JSON}")
    return 0

"""What ``python -m training evaluate`` writes and prints: ``per_image.csv``, ``summary.json``
(both checked for before any scoring, written atomically) and the plain-text table."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from napari_chromagan.errors import OutputError
from napari_chromagan.files.atomic import atomic_write_text, check_writable

__all__ = ["PER_IMAGE_CSV", "SUMMARY_JSON", "check_out", "csv_text", "format_table", "write_atomic"]

PER_IMAGE_CSV = "per_image.csv"
SUMMARY_JSON = "summary.json"


def check_out(out: Path, overwrite: bool) -> None:
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


def write_atomic(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync, then rename it over ``path``."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    atomic_write_text(path, text)


def csv_text(rows: list[dict[str, Any]], size: int) -> str:
    buffer = io.StringIO()
    with_class = bool(rows) and "class_top1_in_teacher_top5" in rows[0]
    writer = csv.DictWriter(buffer, fieldnames=_columns(size, with_class), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _columns(size: int, with_class: bool = False) -> list[str]:
    return [
        "file", "width", "height",
        f"psnr_{size}", f"psnr_{size}_floor", f"ssim_{size}", f"ssim_{size}_floor",
        "psnr_full", "psnr_full_floor", "ssim_full", "ssim_full_floor",
        "cf", "cf_truth", "cf_floor", "a_mean", "a_mean_truth", "b_mean", "b_mean_truth",
    ] + (["class_top1_in_teacher_top5", "class_top1_in_teacher_top5_at_network_size"] if with_class else [])  # fmt: skip


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table of :func:`evaluate`'s summary: metric | model | floor | difference."""
    size = summary["image_size"]
    lines = [
        (
            f"{summary['images']} image(s) scored from {summary['data']} "
            f"({summary['skipped_gray']} gray skipped, {summary['unreadable']} unreadable); "
            f"protocol at {size}x{size}, network at {summary.get('network_size', size)} px, on {summary['device']}"
        ),
        f"weights: {summary['weights']}",
        "",
    ]
    lines += _metrics_table(summary["metrics"], size)
    lines += ["", *_notes(summary)]
    return "\n".join(lines)


def _metrics_table(m: dict[str, Any], size: int) -> list[str]:
    """The aligned rows metric | model | no-colour floor | difference, under a rule."""
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
    lines = []
    for j, row in enumerate(cells):
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join([first, *rest]))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _notes(summary: dict[str, Any]) -> list[str]:
    """The lines under the table: the truth's colourfulness, the mean a*, b*, the class head."""
    size = summary["image_size"]
    m = summary["metrics"]
    lines = [
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
    return lines


def _signed(fmt: str, value: float) -> str:
    text = fmt.format(value)
    return text if text.startswith("-") or math.isnan(value) else "+" + text

"""The ImageNet class names of the class head, and the most likely classes of a distribution.

No Qt and no torch: the Class distribution widget is a thin front end to this.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["ClassRow", "class_names", "to_csv", "top_k"]

ClassRow = tuple[int, str, float]  # (class index, readable name, probability in [0, 1])

_CSV_HEADER = ("rank", "index", "class", "probability")


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    text = (
        resources.files("napari_chromagan")
        .joinpath("imagenet_classes.txt")
        .read_text(encoding="utf-8")
    )
    names = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        # "n01440764 tench, Tinca tinca": the WordNet id, then synonyms; the first is the readable one
        _, _, synonyms = line.partition(" ")
        name = synonyms.split(",")[0].strip()
        if not name:
            raise ValueError(f"imagenet_classes.txt line {number} has no class name: {line!r}")
        names.append(name)
    return tuple(names)


def class_names() -> list[str]:
    """The readable ImageNet class names, index i = softmax output i (1000; index 0 "tench")."""
    return list(_names())


def top_k(probs: np.ndarray, k: int = 5) -> list[ClassRow]:
    """The ``k`` most likely classes of one distribution, most likely first.

    Parameters
    ----------
    probs : array
        float (num_classes,): one plane's class probabilities.
    k : int
        How many (at most num_classes). Ties keep the lower class index first.

    Returns
    -------
    list of (index, name, probability)
        Classes without a known name (a head with more classes than the names file) are
        called "class <index>".
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1 or probs.size == 0:
        raise ValueError(f"probs must be one distribution (num_classes,), got shape {probs.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(int(k), probs.size)
    order = np.argsort(-probs, kind="stable")[:k]
    names = _names()
    return [(int(i), names[i] if i < len(names) else f"class {i}", float(probs[i])) for i in order]


def to_csv(rows: Iterable[ClassRow]) -> str:
    """``rows`` from :func:`top_k` as CSV text: rank, index, class, probability (header first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_HEADER)
    for rank, (index, name, probability) in enumerate(rows, start=1):
        writer.writerow((rank, index, name, f"{probability:.6g}"))
    return buffer.getvalue()

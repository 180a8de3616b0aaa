"""What the training tests share: the flags of a tiny run, folders of smooth colour images, and
the metric rows a run logged.

A helper module rather than a ``conftest.py``: tests import ``tests/conftest.py`` as
``conftest`` (``from conftest import make_generator``), and a second ``conftest.py`` here would
take that name from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# a tiny, quick run: an eighth of the paper's width at 64 px, no workers, every step logged
TINY = [
    "--width",
    "0.125",
    "--image-size",
    "64",
    "--num-workers",
    "0",
    "--log-every",
    "1",
    "--sample-every",
    "0",
]
# the same without the class loss, 4 images a step
TINY_NOCLASS = [*TINY, "--preset", "chromagan-noclass", "--batch-size", "4"]


def noclass_train_args(images: Path, out: Path, max_steps: int, *extra: str) -> list[str]:
    """``training train`` arguments for a tiny run without the class loss, 2 images a step:
    ``extra`` flags go before :data:`TINY`."""
    return [
        "train",
        "--data",
        str(images),
        "--out",
        str(out),
        "--preset",
        "chromagan-noclass",
        "--batch-size",
        "2",
        "--max-steps",
        str(max_steps),
        *extra,
        *TINY,
    ]


def colour_images(
    folder: Path,
    count: int = 16,
    seed: int = 0,
    size: tuple[int, int] = (96, 80),
    name: str = "img{:02d}.png",
) -> Path:
    """``count`` smooth colour images (a colour per quadrant, blurred) of ``size`` = (W, H),
    written into ``folder`` as PNG; returns ``folder``."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BILINEAR).save(folder / name.format(i))
    return folder


def read_metrics(out: Path) -> list[dict]:
    """The rows of ``OUT/metrics.jsonl``, in order."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """16 smooth colour images (a colour per quadrant, blurred), 80x96, for a module's tests:
    take it in as ``images = tiny_runs.images``."""
    return colour_images(tmp_path_factory.mktemp("images"), count=16, seed=1)

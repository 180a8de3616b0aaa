"""Gray | default weights | truth for a few development photographs: docs/side-by-side.jpg.

    .venv/bin/python scripts/side_by_side.py ../shared/data/dev/kodak24/kodim{03,05,14,20,23}.png \
        ../shared/data/dev/bsds500-test/<one>.jpg
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from napari_chromagan import Colorizer
from napari_chromagan.files.atomic import atomic_write


def main(paths: list[str], out: str = "docs/side-by-side.jpg", height: int = 200) -> int:
    colorizer = Colorizer.from_checkpoint(device="cpu")
    rows = []
    for path in paths:
        rgb = Image.open(path).convert("RGB")
        rgb = rgb.resize((round(rgb.width * height / rgb.height), height), Image.LANCZOS)
        truth = np.asarray(rgb)
        gray = np.asarray(rgb.convert("L"))
        colour = colorizer.colorize(truth, rgb=True).rgb  # the engine keeps the photo's own L*
        rows.append(np.concatenate([np.repeat(gray[..., None], 3, -1), colour, truth], axis=1))
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate(
        [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    )
    image = Image.fromarray(grid)
    atomic_write(Path(out), lambda fh: image.save(fh, format="JPEG", quality=85))
    print(f"wrote {out} ({len(rows)} photographs: gray | colourised | truth)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

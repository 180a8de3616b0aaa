"""Gray | colourised | truth for a few development photographs: docs/side-by-side.jpg.

    .venv/bin/python scripts/side_by_side.py ../shared/data/dev/kodak24/kodim{03,05,14,20,23}.png \
        ../shared/data/dev/bsds500-test/<one>.jpg
    .venv/bin/python scripts/side_by_side.py --weights other.pt -o /tmp/other.jpg PHOTO...

Without --weights, the default weights (what `napari-chromagan colorize` uses).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from napari_chromagan import Colorizer
from napari_chromagan.files.atomic import atomic_write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="colour photographs, one row each")
    parser.add_argument("--weights", help="a weights file (default: the default weights)")
    parser.add_argument("-o", "--out", default="docs/side-by-side.jpg", help="the JPEG to write")
    parser.add_argument("--height", type=int, default=200, help="row height in pixels")
    parser.add_argument(
        "--network-size", type=int, help="run the network at this size (default: the weights' own)"
    )
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not Path(p).is_file()]
    if missing:
        parser.error(f"not a file: {', '.join(missing)}")
    paths, out, height = args.paths, args.out, args.height
    colorizer = Colorizer.from_checkpoint(
        args.weights, device="cpu", network_size=args.network_size
    )
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
    raise SystemExit(main())

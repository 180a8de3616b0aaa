"""``python -m napari_chromagan``: the command line (see :mod:`napari_chromagan.cli`)."""

from napari_chromagan.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""The README's Colour hints picture: a real napari viewer, before (the network's colours, with
the hint points) and after (the hinted layer), side by side.

    xvfb-run -a -s "-screen 0 1600x900x24" .venv/bin/python scripts/hints_screenshot.py docs/hints.png

It colourises Kodak's kodim01 (../shared/data/dev) in gray with the shipped demo model, puts
points on the door and shutters whose colours are read from the colour original (known colours,
as an archivist would know them), applies the hints and saves the window.
"""

import sys
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication
from skimage.color import rgb2gray
from skimage.io import imread

from napari_chromagan import colorize_layer
from napari_chromagan.napari._widgets.hints import ColorHintsWidget

out = sys.argv[1]
PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev" / "kodak24" / "kodim01.png"
rgb = imread(PHOTO)[..., :3]
gray = (rgb2gray(rgb) * 255).astype(np.uint8)
viewer = napari.Viewer(show=True)
viewer.window.resize(1500, 820)
source = viewer.add_image(gray, name="kodim01")
colour = colorize_layer(source, viewer=viewer, device="cpu")
widget = ColorHintsWidget(viewer)
viewer.window.add_dock_widget(widget, name="Colour hints")
points = widget.new_points_layer()
spots = [
    (350, 130),
    (80, 73),
    (80, 194),
    (80, 280),
    (80, 352),
    (315, 285),
    (315, 402),
    (200, 450),
    (470, 300),
]
for r, c in spots:
    patch = rgb[r - 3 : r + 4, c - 3 : c + 4].reshape(-1, 3)
    widget.set_colour(
        "#{:02x}{:02x}{:02x}".format(*tuple(int(v) for v in np.median(patch, axis=0)))
    )
    points.add([[r, c]])
worker = widget.apply_to_stack()
app = QApplication.instance()
while worker.is_running or widget.running:
    app.processEvents()
viewer.layers.remove(source)
# bottom to top: the colourised layer and the hints over it (before, the left cell), then the
# hinted layer (after, the right cell)
viewer.layers.move(viewer.layers.index(colour), 0)
viewer.layers.move(viewer.layers.index(points), 1)
viewer.layers.move(viewer.layers.index(widget.output), 2)
points.mode = "pan_zoom"
viewer.grid.stride = 2
viewer.grid.shape = (1, 2)
viewer.grid.enabled = True
viewer.layers.selection.active = points
print([layer.name for layer in viewer.layers])
viewer.reset_view()
for _ in range(50):
    app.processEvents()
viewer.window.screenshot(out, canvas_only=False)
print("wrote", out)
viewer.close()

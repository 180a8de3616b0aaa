"""``napari-chromagan napari``: open napari with the plugin's three widgets and a sample photograph.

This is the README's main command. With ``--screenshot`` it waits for the colourisation, takes a
picture of the whole window (widgets included) and closes: that is how the README's screenshot
is made, under Xvfb, from a real viewer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

PLUGIN = "napari-chromagan"
WIDGETS = ("Colorize", "Class distribution", "Chroma blend")


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if predicate():
            return True
        time.sleep(0.02)
    return False


def open_viewer(
    sample: str = "coffee",
    run: bool = True,
    screenshot: str | Path | None = None,
    timeout: float = 600.0,
    size: tuple[int, int] = (1600, 1000),
) -> int:
    """Open the viewer; return an exit code once it is closed (or the screenshot is written)."""
    import napari

    viewer = napari.Viewer(title="napari-chromagan")
    viewer.window._qt_window.resize(*size)
    viewer.open_sample(PLUGIN, sample)
    docks = {}
    for name in WIDGETS:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=False)
        docks[name] = widget
    # the docks took width from the canvas after the sample was framed: frame it again
    _wait(lambda: False, 0.1)
    viewer.reset_view()
    colorize = docks["Colorize"]
    # the sample's gray layer (the coffee sample adds its colour original first, hidden)
    gray = next((layer for layer in viewer.layers if layer.name == sample), None)
    if gray is not None:
        colorize._layer.value = gray
    if run:
        worker = colorize.run()
        if screenshot is not None and worker is not None:
            if not _wait(lambda: not colorize.running, timeout):
                print(f"napari-chromagan: colourisation did not finish within {timeout:.0f} s")
                viewer.close()
                return 1
    if screenshot is not None:
        _wait(lambda: False, 1.0)  # let the widgets follow the new layer and repaint
        viewer.reset_view()
        _drain()
        path = Path(screenshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(path), canvas_only=False, flash=False)
        print(f"napari-chromagan: wrote {path}")
        viewer.close()
        _drain()  # closing removes layers, and the widgets may start work when they see that
        return 0
    napari.run()
    _drain()
    return 0


def _drain(timeout: float = 60.0) -> None:
    """Process events until no worker of Qt's pool runs and none is queued by the events.

    A worker still inside torch when Python finalises aborts the process (see
    :mod:`napari_chromagan.napari._threads`); a debounced preview can start one from an event, so
    events and waiting alternate until both are quiet.
    """
    from qtpy.QtCore import QThreadPool
    from qtpy.QtWidgets import QApplication

    pool = QThreadPool.globalInstance()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool.waitForDone(max(1, int(1000 * (deadline - time.monotonic()))))
        QApplication.processEvents()
        time.sleep(0.05)  # a debounce timer of the widgets fires within this
        QApplication.processEvents()
        if pool.activeThreadCount() == 0:
            return

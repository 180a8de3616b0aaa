from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def manifest():
    npe2 = pytest.importorskip("npe2")
    return npe2.PluginManifest.from_file(ROOT / "napari.yaml")


def test_manifest_is_valid_and_named_after_the_distribution():
    m = manifest()
    assert m.name == "napari-chromagan"
    from importlib.metadata import distribution

    assert distribution("napari-chromagan").metadata["Name"] == m.name


def test_every_python_name_imports():
    for command in manifest().contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.python_name


def test_dock_widgets_are_contributed():
    m = manifest()
    commands = {c.id: c.python_name for c in m.contributions.commands}
    widgets = {w.display_name: commands[w.command] for w in m.contributions.widgets}
    assert widgets == {
        "Colorize": "napari_chromagan._widgets.colorize:ColorizeWidget",
        "Class distribution": "napari_chromagan._widgets.classes:ClassDistributionWidget",
        "Chroma blend": "napari_chromagan._widgets.blend:ChromaBlendWidget",
    }


def test_installed_package_carries_the_manifest():
    from importlib.resources import files

    shipped = files("napari_chromagan").joinpath("napari.yaml").read_text()
    assert shipped == (ROOT / "napari.yaml").read_text()


def test_sample_data_layers():
    from napari_chromagan._sample_data import camera_gray, coffee_gray_and_color

    ((camera, meta, kind),) = camera_gray()
    assert meta["name"] == "camera"
    assert camera.shape == (512, 512) and camera.dtype == np.uint8 and kind == "image"
    original, gray = coffee_gray_and_color()
    assert original[0].ndim == 3 and original[1]["rgb"] is True
    assert gray[0].shape == original[0].shape[:2]
    # the gray layer is the original's luminance
    from skimage.color import rgb2gray

    assert np.abs(gray[0].astype(float) - rgb2gray(original[0]) * 255).max() <= 0.5


def test_importing_the_package_loads_neither_torch_nor_qt():
    code = "import sys, napari_chromagan; print(sorted(m for m in ('torch', 'qtpy', 'PyQt6', 'napari') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_core_modules_import_no_qt():
    code = (
        "import sys, napari_chromagan.colorize, napari_chromagan.checkpoint, napari_chromagan.weights, "
        "napari_chromagan.normalize, napari_chromagan.color, napari_chromagan.model, napari_chromagan.layers; "
        "print(sorted(m for m in ('qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'napari', 'magicgui', 'training') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

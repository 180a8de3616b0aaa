"""The small demo model shipped in the package: present, small, honest, and used by default."""

from __future__ import annotations

import numpy as np
import pytest

import napari_chromagan.weights as weights_module
from napari_chromagan.checkpoint import load_checkpoint
from napari_chromagan.colorize import Colorizer
from napari_chromagan.weights import resolve_weights

SHIPPED = weights_module.PACKAGED_WEIGHTS  # the real path (conftest redirects it only inside tests)


def test_the_demo_model_ships_and_is_small():
    assert SHIPPED.is_file(), f"{SHIPPED} is missing: the package must ship its demo weights"
    assert SHIPPED.stat().st_size <= 25 * 2**20
    ckpt = load_checkpoint(SHIPPED)
    assert ckpt.config.width < 1.0
    assert ckpt.class_head_trained is False  # trained without an ImageNet teacher
    assert "demo" in ckpt.metadata["label"]
    assert ckpt.training is None  # an inference checkpoint
    # its recorded dev-set evaluation beats the no-colour floor in the 224 protocol
    evaluation = ckpt.metadata["evaluation"]
    assert evaluation["image_size"] == 224
    psnr = evaluation["metrics"]["psnr_224"]
    assert psnr["model"] > psnr["floor"]


def test_the_demo_model_is_the_last_fallback(monkeypatch):
    monkeypatch.setattr(weights_module, "PACKAGED_WEIGHTS", SHIPPED)
    assert resolve_weights() == SHIPPED


def test_the_demo_model_colourises_a_real_photograph():
    from skimage.color import rgb2lab
    from skimage.data import coffee

    rgb = coffee()
    L = rgb2lab(rgb)[..., 0].astype(np.float32)
    result = Colorizer.from_checkpoint(SHIPPED, "cpu").colorize(L, normalization="manual", value_range=(0, 100))
    lab = rgb2lab(result.rgb)
    assert np.abs(lab[..., 0] - L).mean() < 0.5  # lightness kept
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    assert chroma.mean() > 3.0  # it colours, it does not return gray
    # warmer than gray where the truth is warm (the cup and the coffee are brown/red)
    truth_b = rgb2lab(rgb)[..., 2]
    warm = truth_b > 15
    assert lab[..., 2][warm].mean() > 2.0


@pytest.mark.parametrize("name", ["chromagan-demo-small.pt"])
def test_the_demo_model_is_package_data(name):
    from importlib.resources import files

    assert files("napari_chromagan").joinpath("_weights", name).is_file()

"""A colourised layer holds its provenance record, and napari's save path keeps it in the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import AUTO_ON_CPU, make_generator

from napari_chromagan import __version__
from napari_chromagan.edit.blend import BlendParams
from napari_chromagan.errors import UnsupportedImageError
from napari_chromagan.files.provenance import read_provenance
from napari_chromagan.napari._writer import write_colorized_image
from napari_chromagan.napari.layer_result import METADATA_KEY, get_layer_result
from napari_chromagan.weights.checkpoint import save_checkpoint

napari = pytest.importorskip("napari")

H, W = 36, 48


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pt", make_generator())


@pytest.fixture(scope="module")
def colourised(weights):
    """A colourised layer (no viewer), from a 16-bit gray image."""
    from napari_chromagan import colorize_layer

    ramp = np.linspace(500, 40000, H * W).reshape(H, W).astype(np.uint16)
    gray = napari.layers.Image(ramp, name="scan")
    return colorize_layer(gray, weights=weights, device="cpu", with_class=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_colourised_layer_holds_the_record(colourised, weights):
    result = get_layer_result(colourised)
    record = colourised.metadata[METADATA_KEY]["provenance"]
    assert record == result.provenance
    assert record["software"] == "napari-chromagan" and record["version"] == __version__
    assert record["weights_name"] == "tiny.pt" and record["weights_sha256"] == _sha256(weights)
    assert record["precision"] == AUTO_ON_CPU and record["device"] == "cpu"
    # the normalisation the engine used on this layer's data, as the layer result has it
    assert record["normalization"] == result.normalization
    assert record["normalization"]["mode"] == "percentile"
    assert record["normalization"]["low"] == pytest.approx(
        np.percentile(np.linspace(500, 40000, H * W), 0.5), rel=0.01
    )
    assert result.file_provenance() == record  # no Chroma blend applied yet


@pytest.mark.parametrize("ext", [".png", ".tif", ".jpg", ".webp"])
def test_the_plugin_writer_keeps_the_record_and_the_pixels(tmp_path, colourised, ext):
    data, meta, kind = colourised.as_layer_data_tuple()
    assert kind == "image"
    (written,) = write_colorized_image(str(tmp_path / f"out{ext}"), data, meta)
    assert read_provenance(written) == colourised.metadata[METADATA_KEY]["provenance"]
    from napari_chromagan.files.imageio import read_image

    back = read_image(written)
    if ext in (".png", ".tif"):
        assert np.array_equal(back, colourised.data)
    else:  # lossy, but the same picture
        assert np.abs(back.astype(int) - colourised.data.astype(int)).mean() < 6


def test_a_chroma_blend_applied_since_is_part_of_the_saved_record(tmp_path, colourised):
    data, meta, _ = colourised.as_layer_data_tuple()
    stored = meta["metadata"][METADATA_KEY]
    blend = BlendParams(strength=1.5).to_dict()
    meta = {
        **meta,
        "metadata": {METADATA_KEY: {**stored, "blend": blend}},
    }  # as the blend widget stores it
    (written,) = write_colorized_image(str(tmp_path / "vivid.png"), data, meta)
    record = read_provenance(written)
    assert record["blend"] == blend
    assert {k: v for k, v in record.items() if k != "blend"} == stored["provenance"]


def test_the_writer_refuses_what_it_cannot_write_saying_what_to_do(tmp_path, colourised):
    data, meta, _ = colourised.as_layer_data_tuple()
    with pytest.raises(UnsupportedImageError, match="napari's own writer"):
        write_colorized_image(
            str(tmp_path / "g.png"), np.zeros((H, W), np.uint16), {"name": "g", "rgb": False}
        )
    stack = np.stack([data, data])
    with pytest.raises(UnsupportedImageError, match="save it as .tif"):
        write_colorized_image(str(tmp_path / "s.png"), stack, meta)
    assert not (tmp_path / "s.png").exists()
    (written,) = write_colorized_image(str(tmp_path / "s.tif"), stack, meta)
    assert read_provenance(written)["weights_name"] == "tiny.pt"
    # a plain RGB layer (not colourised) is written, without a record
    (plain,) = write_colorized_image(
        str(tmp_path / "p.png"), data, {"name": "p", "rgb": True, "metadata": {}}
    )
    assert read_provenance(plain) is None


@pytest.mark.qt
def test_viewer_layers_save_keeps_the_record_with_the_plugin_writer(
    tmp_path, make_napari_viewer_proxy, colourised
):
    # the public API only (a proxy viewer): what a script or another plugin does
    viewer = make_napari_viewer_proxy()
    viewer.add_layer(colourised)
    record = colourised.metadata[METADATA_KEY]["provenance"]
    for ext in (".png", ".tif", ".jpg"):
        (saved,) = viewer.layers.save(str(tmp_path / f"layer{ext}"), plugin="napari-chromagan")
        assert read_provenance(saved) == record
    # napari's own writer (napari builtins, first in napari's Save dialog) writes pixels only: the
    # record is lost, which is why the README points to this plugin's writer. (Named by its
    # command: npe2 matches plugin names as prefixes, so plugin="napari" also picks this plugin.)
    (builtin,) = viewer.layers.save(str(tmp_path / "builtin.png"), plugin="napari.write_image")
    assert read_provenance(builtin) is None
    from napari_chromagan.files.imageio import read_image

    assert np.array_equal(read_image(builtin)[..., :3], colourised.data)


def _action(menu, command_id):
    for action in menu.actions():
        if getattr(action, "_command_id", None) == command_id:
            return action
        sub = action.menu()
        if sub is not None and (found := _action(sub, command_id)) is not None:
            return found
    return None


@pytest.mark.qt
def test_file_save_selected_layers_keeps_the_record(
    tmp_path, make_napari_viewer, monkeypatch, colourised
):
    # make_napari_viewer, not the proxy: the test walks the window's File menu
    viewer = make_napari_viewer()
    viewer.add_layer(colourised)
    viewer.layers.selection = {colourised}
    offered = {}

    def choose_our_file_type(*args, filter="", **kwargs):
        offered["filters"] = filter.split(";;")
        ours = next(f for f in offered["filters"] if "colourised image with provenance" in f)
        return str(tmp_path / "saved.tif"), ours

    from qtpy.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", choose_our_file_type)
    entry = _action(viewer.window.file_menu, "napari.window.file.save_layers_dialog.selected")
    assert entry is not None and entry.isEnabled()
    entry.trigger()

    assert any(
        f.startswith("ChromaGAN colorization colourised image with provenance (*.png *.tif")
        for f in offered["filters"]
    )
    record = read_provenance(tmp_path / "saved.tif")
    assert record == colourised.metadata[METADATA_KEY]["provenance"]

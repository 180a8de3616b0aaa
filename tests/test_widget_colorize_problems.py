"""The Colorize dock widget when something is wrong: missing or unreadable weights, unsupported
images, out of memory, bugs, bad settings. Each becomes a notification that says what to do, and
no layer is made. The widget helpers are test_widget_colorize's."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch
from conftest import make_generator

from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.napari.layer_result import get_layer_result

pytestmark = pytest.mark.qt

cw = pytest.importorskip("napari_chromagan.napari._widgets.colorize")
import test_widget_colorize as twc  # noqa: E402

from napari_chromagan.napari._widgets import _weights_choice as wc  # noqa: E402
from napari_chromagan.napari._widgets import _workers  # noqa: E402

make_widget, ramp, run_and_wait, outputs = twc.make_widget, twc.ramp, twc.run_and_wait, twc.outputs
# the fixtures
_fresh_cache, cached_weights, notes, viewer = (
    twc._fresh_cache,
    twc.cached_weights,
    twc.notes,
    twc.viewer,
)


# ------------------------------------------------------------------ problems become notifications


def test_no_weights_tells_how_to_get_them(qtbot, viewer, notes):
    viewer.add_image(ramp((16, 16)), name="img")
    widget = make_widget(viewer)  # opens although there are no weights
    assert widget._weights.native.itemText(0) == "default: none found"
    run_and_wait(qtbot, widget)
    (note,) = notes
    assert (
        note[0] == "error"
        and "no ChromaGAN weights found" in note[1]
        and "import-weights" in note[1]
    )
    assert outputs(viewer) == []


def test_unsupported_image_is_reported(qtbot, viewer, cached_weights, notes):
    viewer.add_image(np.zeros((16, 16), bool), name="mask")
    widget = make_widget(viewer)
    run_and_wait(qtbot, widget)
    (note,) = notes
    assert note[0] == "error" and "cannot colourise a bool array" in note[1]
    assert outputs(viewer) == []


def test_out_of_memory_retries_then_falls_back_with_warnings(
    qtbot, viewer, cached_weights, notes, monkeypatch
):
    import napari_chromagan.napari.colorizer_cache as colorizer_cache

    real_predict = Colorizer.predict
    real_load = colorizer_cache.load_colorizer
    sizes = []

    def predict(self, L, with_class=True):  # the network has room for 2 planes at a time
        sizes.append(L.shape[0])
        if L.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return real_predict(self, L, with_class=with_class)

    monkeypatch.setattr(Colorizer, "predict", predict)
    viewer.add_image(ramp((4, 16, 16)), name="img")
    widget = make_widget(viewer)
    widget._batch.value = 8
    run_and_wait(qtbot, widget)
    assert [kind for kind, _ in notes] == ["warning"]
    assert "finished with batch size 2" in notes[0][1]
    assert sizes == [4, 4, 2, 2] and len(outputs(viewer)) == 1

    # now the "GPU" never has room: the run moves to the CPU
    def out_of_memory(image, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        yield  # a generator, like the engine's

    def load(weights, device="auto", network_size=None):
        colorizer = real_load(weights, "cpu", network_size)
        if device != "cpu":
            colorizer = Colorizer(make_generator(), "cpu", weights=colorizer.weights)
            colorizer.device = torch.device("cuda", 0)  # a stand-in that fails before any work
            colorizer.iter_colorize = out_of_memory
        return colorizer

    monkeypatch.setattr(colorizer_cache, "load_colorizer", load)
    notes.clear()
    widget._batch.value = 2
    run_and_wait(qtbot, widget)
    assert [kind for kind, _ in notes] == ["warning"]
    assert "running on the CPU instead" in notes[0][1]
    assert get_layer_result(outputs(viewer)[0]).device == "cpu"


def test_unexpected_errors_are_short_and_logged(
    qtbot, viewer, cached_weights, notes, monkeypatch, caplog
):
    def broken(self, L, with_class=True):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Colorizer, "predict", broken)
    viewer.add_image(ramp((16, 16)), name="img")
    widget = make_widget(viewer)
    with caplog.at_level(logging.ERROR, logger=_workers.__name__):
        run_and_wait(qtbot, widget)
    (note,) = notes
    assert note[0] == "error" and note[1].startswith("Colorize failed (ZeroDivisionError: a bug)")
    assert any(
        record.exc_info and record.exc_info[0] is ZeroDivisionError for record in caplog.records
    )
    assert outputs(viewer) == []


def test_nothing_to_colourise(viewer, cached_weights, notes):
    viewer.add_points(np.zeros((2, 2)))
    widget = make_widget(viewer)
    assert widget.run() is None
    assert notes == [("info", "Colorize: open or add an image layer first.")]


def test_manual_range_must_be_increasing(viewer, cached_weights, notes):
    viewer.add_image(ramp((16, 16)), name="img")
    widget = make_widget(viewer)
    widget._normalization.value = "manual"
    widget._v_min.value, widget._v_max.value = 5.0, 5.0
    assert widget.run() is None
    assert notes == [("error", "Colorize: the manual minimum must be below the maximum.")]


def test_an_unreadable_weights_file_is_reported(
    qtbot, viewer, cached_weights, notes, tmp_path, monkeypatch
):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(cw.ColorizeWidget, "_ask_weights_file", lambda self: str(bad))
    viewer.add_image(ramp((16, 16)), name="img")
    widget = make_widget(viewer)
    widget._weights.value = wc.CHOOSE_WEIGHTS
    run_and_wait(qtbot, widget)
    (note,) = notes
    assert note[0] == "error" and "broken.pt is not a readable PyTorch file" in note[1]
    assert outputs(viewer) == []


def test_no_thread_is_left_behind():
    assert not any(t.name == "napari-chromagan-colorize" for t in threading.enumerate())


# ------------------------------------------------------------------ network size


def test_network_size_runs_the_weights_at_that_size(qtbot, viewer, notes):
    from napari_chromagan.model.generator import ModelConfig
    from napari_chromagan.weights.checkpoint import save_checkpoint
    from napari_chromagan.weights.lookup import user_weights_dir

    lite = make_generator(ModelConfig(width=0.125, image_size=64, trunk="efficientnet-lite0"))
    save_checkpoint(user_weights_dir() / "lite.pt", lite, {"class_head_trained": False})
    data = ramp((40, 56), np.uint8, high=220)
    viewer.add_image(data, name="img")
    widget = make_widget(viewer)
    widget._device.value = "cpu"
    widget._normalization.value = "dtype"
    widget._network_size.value = 128
    run_and_wait(qtbot, widget)
    assert notes == []
    (out,) = outputs(viewer)
    expected = Colorizer(lite, "cpu", network_size=128).colorize(data, normalization="dtype")
    np.testing.assert_array_equal(out.data, expected.rgb)
    assert get_layer_result(out).provenance["network_size"] == 128
    assert "at network size 128" in widget._status.value


def test_a_network_size_the_weights_cannot_run_at_is_reported(qtbot, viewer, cached_weights, notes):
    viewer.add_image(ramp((16, 16)), name="img")
    widget = make_widget(viewer)
    widget._network_size.value = 128  # the cached weights are the VGG16 family at 64 px
    run_and_wait(qtbot, widget)
    (note,) = notes
    assert note[0] == "error" and "fit 64 px only" in note[1] and "own size" in note[1]
    assert outputs(viewer) == []

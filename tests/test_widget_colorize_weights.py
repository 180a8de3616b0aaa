"""The Colorize dock widget's weights that are not on disk yet: a registry entry downloaded from
a local 127.0.0.1 server (progress, refusal with the manual steps, cancel) and the authors' Keras
file imported into the cache. The widget helpers are test_widget_colorize's."""

from __future__ import annotations

import dataclasses
import functools

import pytest
from conftest import HANG_MS

from napari_chromagan.napari.layer_result import get_layer_result
from napari_chromagan.napari.settings import load_settings
from napari_chromagan.weights import registry
from napari_chromagan.weights.lookup import user_weights_dir

pytestmark = pytest.mark.qt

cw = pytest.importorskip("napari_chromagan.napari._widgets.colorize")
import test_download as td  # noqa: E402
import test_widget_colorize as twc  # noqa: E402

from napari_chromagan.napari._widgets import _weights_choice as wc  # noqa: E402

make_widget, ramp, run_and_wait = twc.make_widget, twc.ramp, twc.run_and_wait
weights_labels, outputs = twc.weights_labels, twc.outputs
# the fixtures
_fresh_cache, cached_weights, notes, viewer = (
    twc._fresh_cache,
    twc.cached_weights,
    twc.notes,
    twc.viewer,
)


MANUAL = td.MANUAL
server = td.server  # the local 127.0.0.1 HTTP server of test_download
refused_url = td.refused_url
IMAGENET = wc.REGISTRY_PREFIX + "chromagan-imagenet"


@pytest.fixture(scope="module")
def small_h5(tmp_path_factory):
    """A synthetic Keras file of the small test architecture, named like the authors' file."""
    pytest.importorskip("h5py")
    from test_keras_import import random_arrays, write_keras_h5

    return write_keras_h5(
        tmp_path_factory.mktemp("keras") / "my_model_colorization.h5", random_arrays()
    )


@pytest.fixture
def small_config(monkeypatch):
    """The registry and the importer convert with the small test architecture."""
    from test_keras_import import SMALL

    from napari_chromagan.weights import keras_import

    monkeypatch.setattr(registry, "fetch", functools.partial(registry.fetch, config=SMALL))
    monkeypatch.setattr(
        keras_import,
        "import_keras_weights_to_checkpoint",
        functools.partial(keras_import.import_keras_weights_to_checkpoint, config=SMALL),
    )


def serve_imagenet_from(monkeypatch, *urls):
    entry = dataclasses.replace(registry.REGISTRY["chromagan-imagenet"], urls=tuple(urls))
    monkeypatch.setattr(registry, "REGISTRY", {**registry.REGISTRY, entry.name: entry})


def wait_for(qtbot, widget, worker):
    assert worker is not None and widget.worker is worker
    qtbot.waitUntil(lambda: not widget.running, timeout=HANG_MS)
    worker.await_workers(HANG_MS)


def test_download_a_registry_entry_then_run_with_it(
    qtbot, viewer, server, small_h5, small_config, notes, monkeypatch
):
    base, state = server
    data = small_h5.read_bytes()
    state.files["/my_model_colorization.h5"] = data
    serve_imagenet_from(monkeypatch, f"{base}/my_model_colorization.h5")
    calls = []
    original = cw.ColorizeWidget._on_download_progress

    def recorder(self, done, total):
        calls.append((done, total, self._pbar.total if self._pbar is not None else None))
        original(self, done, total)

    monkeypatch.setattr(cw.ColorizeWidget, "_on_download_progress", recorder)
    viewer.add_image(ramp((2, 32, 32)), name="img")
    widget = make_widget(viewer)
    widget._weights.value = IMAGENET
    run_and_wait(qtbot, widget)  # Run with a missing entry downloads it

    target = user_weights_dir() / "chromagan-imagenet.pt"
    assert target.is_file() and registry.entry_status("chromagan-imagenet") == "available"
    assert widget._weights.value == str(target) and widget._weights_path() == str(target)
    assert (
        "chromagan-imagenet" in weights_labels(widget) and widget._download_button.native.isHidden()
    )
    assert calls[0][:2] == (0, len(data)) and calls[-1] == (len(data), len(data), len(data))
    assert [kind for kind, _ in notes] == ["info"] and "Press Run" in notes[0][1]
    assert outputs(viewer) == [] and state.requests == [("/my_model_colorization.h5", None)]
    assert load_settings("colorize")["weights"] == str(target)

    run_and_wait(qtbot, widget)  # now Run colourises with the downloaded weights
    (out,) = outputs(viewer)
    assert get_layer_result(out).weights == str(target)
    assert len(notes) == 1


def test_refused_download_shows_the_manual_steps(qtbot, viewer, refused_url, notes, monkeypatch):
    serve_imagenet_from(monkeypatch, refused_url)
    widget = make_widget(viewer)
    widget._weights.value = IMAGENET
    wait_for(qtbot, widget, widget.download())
    (note,) = notes
    assert note[0] == "error" and "refused" in note[1] and refused_url in note[1]
    assert MANUAL in note[1] and "import-weights" in note[1] and "Traceback" not in note[1]
    assert widget._weights.value == IMAGENET and not widget._download_button.native.isHidden()
    assert (
        widget._run_button.enabled
        and widget._download_button.enabled
        and not widget._cancel_button.enabled
    )


def test_cancelled_download_keeps_the_partial_file(
    qtbot, viewer, server, small_h5, notes, monkeypatch
):
    base, state = server
    state.files["/my_model_colorization.h5"] = small_h5.read_bytes()
    state.mode = "stall"  # the answer comes after a second: Cancel is pressed before it
    serve_imagenet_from(monkeypatch, f"{base}/my_model_colorization.h5")
    widget = make_widget(viewer)
    widget._weights.value = IMAGENET
    worker = widget.download()
    widget._cancel_button.native.click()
    wait_for(qtbot, widget, worker)
    (note,) = notes
    assert note[0] == "info" and "cancelled" in note[1] and "resumes" in note[1]
    assert registry.entry_status("chromagan-imagenet") == "missing"
    assert widget._weights.value == IMAGENET and widget._run_button.enabled


def test_import_keras_weights_into_the_cache(
    qtbot, viewer, cached_weights, small_h5, small_config, notes, monkeypatch, tmp_path
):
    answers = iter([None, str(small_h5), str(small_h5)])
    monkeypatch.setattr(cw.ColorizeWidget, "_ask_keras_file", lambda self: next(answers))
    widget = make_widget(viewer)
    widget._weights.value = wc.IMPORT_KERAS  # the dialog is cancelled
    assert widget._weights.value == wc.DEFAULT_WEIGHTS and widget.worker is None

    widget._weights.value = wc.IMPORT_KERAS
    assert widget._weights.value == wc.DEFAULT_WEIGHTS  # the list does not stay on the action
    wait_for(qtbot, widget, widget.worker)
    target = user_weights_dir() / "chromagan-imagenet.pt"
    assert widget._weights.value == str(target) and target.is_file()
    assert "chromagan-imagenet" in weights_labels(widget) and notes == []

    widget._weights.value = wc.IMPORT_KERAS  # again: a new file, the first one is kept
    wait_for(qtbot, widget, widget.worker)
    again = user_weights_dir() / "chromagan-imagenet-2.pt"
    assert widget._weights.value == str(again) and "chromagan-imagenet-2.pt" in weights_labels(
        widget
    )

    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    monkeypatch.setattr(cw.ColorizeWidget, "_ask_keras_file", lambda self: str(bad))
    widget._weights.value = wc.IMPORT_KERAS
    wait_for(qtbot, widget, widget.worker)
    (note,) = notes
    assert (
        note[0] == "error"
        and note[1].startswith("Importing bad.h5 failed")
        and "Traceback" not in note[1]
    )
    assert widget._weights.value == str(again)

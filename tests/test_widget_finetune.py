"""The Fine-tune dock widget in a real (virtual-display) napari viewer: it trains a tiny model in
a separate `python -m training` process on generated colour images (issue 15)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_MS, capture_notes
from PIL import Image

from napari_chromagan.napari.layer_result import get_layer_result, is_colorized
from napari_chromagan.weights.checkpoint import load_checkpoint
from napari_chromagan.weights.lookup import user_weights_dir

pytestmark = [pytest.mark.qt, pytest.mark.slow]

ft = pytest.importorskip("napari_chromagan.napari._widgets.finetune")
from napari_chromagan.napari._widgets import _finetune_follow as follow  # noqa: E402
from napari_chromagan.napari._widgets import colorize as cw  # noqa: E402
from training.__main__ import main as training_main  # noqa: E402
from training.export import export  # noqa: E402
from training.progress import read_progress  # noqa: E402
from training.train import checkpoint_files  # noqa: E402


def colour_image(seed: int, shape=(80, 96)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(shape[::-1], Image.BILINEAR))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """Exported weights of a 1-step, width-0.125, 64-pixel model (what the widget starts from)."""
    folder = tmp_path_factory.mktemp("start")
    for i in range(4):
        Image.fromarray(colour_image(100 + i)).save(folder / f"{i}.png")
    out = folder / "run"
    assert (
        training_main(
            [
                "train",
                "--data",
                str(folder),
                "--out",
                str(out),
                "--width",
                "0.125",
                "--image-size",
                "64",
                "--preset",
                "chromagan-noclass",
                "--batch-size",
                "2",
                "--max-steps",
                "1",
                "--num-workers",
                "0",
                "--sample-every",
                "0",
            ]
        )
        == 0
    )
    return export(checkpoint_files(out)[-1], folder / "tiny-start.pt")


@pytest.fixture
def notes(monkeypatch):
    return capture_notes(
        monkeypatch, (ft, follow)
    )  # the widget, and its following of the run (the end, export)


def make_widget(viewer) -> ft.FinetuneWidget:
    widget = ft.FinetuneWidget(viewer)
    widget.num_workers = 0
    viewer.window.add_dock_widget(widget, name="Fine-tune")
    return widget


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_fine_tune_from_layers_stop_resume_finish_and_colourise(
    make_napari_viewer, qtbot, tiny_weights, notes
):
    viewer = make_napari_viewer()
    a, b = colour_image(1, (160, 200)), colour_image(2, (150, 140))
    layer_a = viewer.add_image(a.copy(), name="tissue A", rgb=True)
    layer_b = viewer.add_image(b.copy(), name="tissue B", rgb=True)
    gray = viewer.add_image(colour_image(3).mean(axis=-1).astype(np.uint8), name="gray")
    colorize = cw.ColorizeWidget(viewer)
    viewer.window.add_dock_widget(colorize, name="Colorize")
    widget = make_widget(viewer)
    assert [name for name, _ in widget._colour_layer_choices()] == [
        "tissue A",
        "tissue B",
    ]  # not the gray one
    widget._source.value = ft.FROM_LAYERS
    widget._layers.value = [layer_a, layer_b]
    widget._held_out.value = 0.25
    widget.set_start_weights(tiny_weights)
    widget._steps.value = 400
    widget._batch.value = 2
    widget._name.value = "my-tissue"

    run = widget.start()
    assert run is not None, notes
    # the layers went in as 128-pixel tiles (twice the network's 64): 2 x 2 from A, 2 x 2 from B
    tiles = sorted((run.out / "training-images").iterdir())
    assert len(tiles) == 8
    assert np.array_equal(np.asarray(Image.open(tiles[0])), a[:128, :128])
    qtbot.waitUntil(
        lambda: widget._progress.value >= 40 and widget._sample_layer is not None, timeout=HANG_MS
    )
    first_value, first_points = widget._progress.value, len(widget.plot.series["loss_g"])
    first_sample = widget._sample_layer.metadata["finetune_sample"]
    assert widget._progress.max == 400 and first_points >= 2
    assert widget.plot.series["val_psnr"], "no validation point yet"
    qtbot.waitUntil(
        lambda: (
            widget._progress.value >= first_value + 20
            and widget._sample_layer.metadata["finetune_sample"] != first_sample
        ),
        timeout=HANG_MS,
    )
    assert len(widget.plot.series["loss_g"]) > first_points  # the plot advanced
    sample = widget._sample_layer.data
    assert sample.shape == (
        3 * 64,
        2 * 64,
        3,
    )  # gray / colourised / truth of the two held-out tiles
    assert widget._time_left.value.endswith("images/s)")  # "1 min 05 s (30.5 images/s)"

    # Stop: the process checkpoints and ends; the widget says so
    pid = run.process.pid
    widget.stop()
    qtbot.waitUntil(
        lambda: not widget.running and "stopped" in widget._status.value, timeout=HANG_MS
    )
    assert run.returncode == 130 and _gone(pid)
    progress = read_progress(run.out)
    assert progress["state"] == "stopped"
    stopped_at = progress["step"]
    assert checkpoint_files(run.out)[-1].name == f"step-{stopped_at:08d}.pt"
    assert widget.exported is None and not widget._export_button.enabled  # nothing to export yet
    assert not list(user_weights_dir().glob("*.pt"))

    # Resume to a few steps further, and let it finish: the weights are exported at once
    widget._steps.value = stopped_at + 21
    resumed = widget.resume()
    assert resumed is not None and resumed.out == run.out
    qtbot.waitUntil(lambda: widget.exported is not None, timeout=HANG_MS)
    assert resumed.returncode == 0 and _gone(resumed.process.pid)
    assert widget._progress.value == widget._progress.max == stopped_at + 21
    exported = widget.exported
    assert exported == user_weights_dir() / "my-tissue.pt"
    ckpt = load_checkpoint(exported)
    assert ckpt.metadata["fine_tuned_from"]["weights"] == str(tiny_weights)
    assert ckpt.metadata["steps"] == stopped_at + 21
    rows = [json.loads(line) for line in (run.out / "metrics.jsonl").read_text().splitlines()]
    last_val = [r for r in rows if "val_psnr" in r][-1]
    assert ckpt.metadata["evaluation"]["metrics"]["psnr"]["model"] == last_val["val_psnr"]
    assert last_val["step"] == stopped_at + 21

    # the Colorize widget lists the new weights at once, and colourises with them
    # (the newest file of the weights folder is also what "default" resolves to, so it shows there)
    combo = colorize._weights.native
    labels = [combo.itemText(i) for i in range(combo.count())]
    (entry,) = [i for i, label in enumerate(labels) if label.endswith("my-tissue.pt")]
    colorize._weights.value = combo.itemData(entry)
    colorize._layer.value = gray
    assert colorize.run() is not None
    qtbot.waitUntil(lambda: not colorize.running, timeout=HANG_MS)
    (made,) = [layer for layer in viewer.layers if is_colorized(layer)]
    assert get_layer_result(made).weights == str(exported)
    # the training layers were only read
    assert np.array_equal(layer_a.data, a) and np.array_equal(layer_b.data, b)
    # a second export under the same name is refused, nothing overwritten
    before = exported.stat().st_mtime_ns
    assert widget.export() is not None
    qtbot.waitUntil(lambda: "already exists" in widget._status.value, timeout=HANG_MS)
    assert exported.stat().st_mtime_ns == before
    assert any(kind == "error" and "choose another name" in text for kind, text in notes)


def test_a_run_killed_from_outside_is_reported_and_nothing_is_offered(
    make_napari_viewer, qtbot, tmp_path, notes
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(10):
        Image.fromarray(colour_image(20 + i)).save(folder / f"p{i}.png")
    viewer = make_napari_viewer()
    colorize = cw.ColorizeWidget(viewer)
    widget = make_widget(viewer)
    widget._folder.value = folder
    widget._start_from.value = ft.START_SCRATCH
    widget._size.value = 64
    widget._width.value = 0.125
    widget._batch.value = 2
    widget._steps.value = 5000
    widget._held_out.value = 0.0
    run = widget.start()
    assert run is not None, notes
    qtbot.waitUntil(lambda: widget._progress.value >= 5, timeout=HANG_MS)
    choices_before = list(colorize._weights.choices)

    os.kill(run.process.pid, signal.SIGKILL)
    qtbot.waitUntil(
        lambda: not widget.running and "killed" in widget._status.value, timeout=HANG_MS
    )
    assert "SIGKILL" in widget._status.value and "nothing was exported" in widget._status.value
    assert any(kind == "warning" and "killed (SIGKILL)" in text for kind, text in notes)
    assert run.returncode == -signal.SIGKILL
    assert read_progress(run.out)["state"] == "running"  # it could not say otherwise
    # nothing offered as weights: no export, no file, no new entry in Colorize's list
    assert widget.export() is None and widget.exported is None
    assert not widget._export_button.enabled
    # Resume is offered exactly when the killed run had written a (complete) checkpoint
    assert widget._resume_button.enabled == bool(checkpoint_files(run.out))
    assert ("Resume continues from it" in widget._status.value) == bool(checkpoint_files(run.out))
    assert not list(user_weights_dir().glob("*.pt"))
    assert list(colorize._weights.choices) == choices_before
    # napari carries on
    layer = viewer.add_image(np.zeros((8, 8), np.uint8), name="still here")
    assert layer in viewer.layers


def test_closing_napari_stops_the_run_when_asked_to(make_napari_viewer, qtbot, tmp_path, notes):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(colour_image(40 + i)).save(folder / f"p{i}.png")
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget._folder.value = folder
    widget._start_from.value = ft.START_SCRATCH
    widget._size.value = 64
    widget._width.value = 0.125
    widget._batch.value = 2
    widget._steps.value = 5000
    widget._held_out.value = 0.0
    assert widget._on_close.value == ft.STOP_IT  # the default
    run = widget.start()
    assert run is not None, notes
    assert "napari closing stops it" in widget._status.value
    qtbot.waitUntil(lambda: (read_progress(run.out) or {}).get("step", 0) >= 2, timeout=HANG_MS)
    viewer.close()
    assert run.wait(timeout=HANG_MS / 1000) == 130
    assert read_progress(run.out)["state"] == "stopped" and checkpoint_files(run.out)


def test_closing_napari_leaves_the_run_going_when_asked_to(
    make_napari_viewer, qtbot, tmp_path, notes
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(colour_image(60 + i)).save(folder / f"p{i}.png")
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget._folder.value = folder
    widget._start_from.value = ft.START_SCRATCH
    widget._size.value = 64
    widget._width.value = 0.125
    widget._batch.value = 2
    widget._steps.value = 5000
    widget._held_out.value = 0.0
    widget._on_close.value = ft.KEEP_GOING
    run = widget.start()
    assert run is not None, notes
    assert "it keeps going if napari closes" in widget._status.value
    qtbot.waitUntil(lambda: (read_progress(run.out) or {}).get("step", 0) >= 2, timeout=HANG_MS)
    viewer.close()
    qtbot.wait(200)
    step = read_progress(run.out)["step"]
    qtbot.waitUntil(
        lambda: read_progress(run.out)["step"] > step, timeout=HANG_MS
    )  # still training
    assert run.wait(timeout=0.1) is None
    run.stop()  # (the test's own clean-up: a terminal user would do this with Ctrl-C or kill -INT)
    assert run.wait(timeout=HANG_MS / 1000) == 130


def test_the_live_plot_draws_its_series(qtbot):
    from napari_chromagan.napari._widgets._plot import LivePlot

    plot = LivePlot()
    qtbot.addWidget(plot)
    plot.resize(300, 160)

    def pixels(colour: str) -> int:
        image = plot.grab().toImage()
        target = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        return sum(
            1
            for y in range(image.height())
            for x in range(image.width())
            if max(
                abs(a - b) for a, b in zip(image.pixelColor(x, y).getRgb()[:3], target, strict=True)
            )
            < 30
        )

    legend_g, legend_val = (
        pixels("#e6a23c"),
        pixels("#98c379"),
    )  # the legend's names, in their colours
    for step in range(1, 11):
        plot.add_row({"step": step, "loss_g": 1.0 / step, "mse": 0.1 * step})  # (falling, rising)
    plot.add_row({"step": 10, "val_psnr": 22.0, "val_psnr_floor": 21.0})
    plot.add_row({"step": 20, "val_psnr": 23.0, "val_psnr_floor": 21.0, "loss_g": float("nan")})
    assert [s for s, _ in plot.series["loss_g"]] == list(range(1, 11))  # NaN is not drawn
    assert plot.series["val_psnr"] == [(10.0, 22.0), (20.0, 23.0)]
    assert pixels("#e6a23c") > legend_g + 100 and pixels("#98c379") > legend_val + 50  # the lines
    # a resumed run logs a step again: its point replaces the old ones from there on
    plot.add_row({"step": 5, "loss_g": 9.0})
    assert plot.series["loss_g"][-1] == (5.0, 9.0) and len(plot.series["loss_g"]) == 5
    plot.clear()
    assert pixels("#e6a23c") <= legend_g and pixels("#98c379") <= legend_val

"""training.finetune, the Qt-free side of the Fine-tune widget: training images from arrays, the
command line of a run, following its files, describing how it ended, and exporting (issue 15)."""

from __future__ import annotations

import signal
import sys

import numpy as np
import pytest
from conftest import HANG_S
from PIL import Image
from tiny_runs import read_metrics

from napari_chromagan.weights.checkpoint import load_checkpoint
from napari_chromagan.weights.lookup import user_weights_dir
from training.__main__ import build_parser
from training.finetune import (
    FinetuneError,
    FinetuneRun,
    FinetuneSettings,
    describe_exit,
    validation_summary,
    weights_image_size,
    write_training_images,
)
from training.progress import ExitCode, ProgressWriter


def test_training_images_are_tiles_of_the_arrays_which_stay_as_they_were(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (300, 250, 3), dtype=np.uint8)
    stack = rng.integers(0, 65536, (2, 60, 70, 4), dtype=np.uint16)
    floats = rng.random((50, 40, 3)).astype(np.float32) * 2.0 - 0.5  # contrast limits -0.5..1.5
    originals = [big.copy(), stack.copy(), floats.copy()]
    files = write_training_images(
        [("big one", big, None), ("stack/2", stack, None), ("float", floats, (-0.5, 1.5))],
        tmp_path / "t",
        tile=128,
    )
    for array, original in zip((big, stack, floats), originals, strict=True):
        assert np.array_equal(array, original)
    # 300 x 250 in 128-pixel tiles: rows at 0, 128, 172 (flush with the end), columns at 0, 122
    big_files = [f for f in files if "-big_one-" in f.name]
    assert len(big_files) == 6
    corner = np.asarray(Image.open(tmp_path / "t" / "000-big_one-0000-00172-00122.png"))
    assert np.array_equal(corner, big[172:, 122:])
    # a uint16 RGBA stack: each plane, alpha dropped, /257
    plane = np.asarray(Image.open(tmp_path / "t" / "001-stack_2-0001-00000-00000.png"))
    assert np.array_equal(plane, np.round(stack[1, ..., :3] / 257.0).astype(np.uint8))
    # floats through the contrast limits
    f = np.asarray(Image.open(tmp_path / "t" / "002-float-0000-00000-00000.png")).astype(float)
    expected = np.clip(np.round((floats.astype(np.float64) + 0.5) * 127.5), 0, 255)
    assert np.array_equal(f, expected)
    assert len(files) == 6 + 2 + 1


def test_training_images_refuse_gray_arrays_and_a_used_folder(tmp_path):
    with pytest.raises(FinetuneError, match="'gray' is not a colour image"):
        write_training_images(
            [("gray", np.zeros((40, 40), np.uint8), None)], tmp_path / "a", tile=64
        )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.png").write_bytes(b"x")
    with pytest.raises(FinetuneError, match="already holds files"):
        write_training_images(
            [("c", np.zeros((40, 40, 3), np.uint8), None)], tmp_path / "b", tile=64
        )
    assert (tmp_path / "b" / "mine.png").read_bytes() == b"x"


def test_settings_make_a_command_line_the_trainer_accepts(tmp_path):
    scratch = FinetuneSettings(
        data="d", out="o", steps=200, lr=1e-4, width=0.125, image_size=64, val_fraction=0.2
    )
    tuned = FinetuneSettings(data="d", out="o", init_from="w.pt", steps=3000, val_fraction=None)
    parser = build_parser()
    a = parser.parse_args(["train", *scratch.argv()])
    assert (a.width, a.image_size, a.init_from, a.val_fraction, a.lr) == (
        0.125,
        64,
        None,
        0.2,
        1e-4,
    )
    assert (a.log_every, a.sample_every, a.val_every, a.checkpoint_every) == (2, 10, 10, 20)
    b = parser.parse_args(["train", *tuned.argv()])
    # with weights, the model's shape is the file's: no shape flags that could contradict it
    assert (b.width, b.image_size, b.init_from, b.val_fraction, b.max_steps) == (
        None,
        None,
        "w.pt",
        None,
        3000,
    )
    # from weights the learning rate ramps over a tenth of the run; from scratch it does not
    assert (b.lr_warmup, a.lr_warmup) == (300, None)


def test_describe_exit_says_how_each_run_ended():
    progress = {"step": 12, "checkpoint": "/r/checkpoints/step-00000012.pt"}
    assert describe_exit(ExitCode.FINISHED, progress) == "finished at step 12"
    assert "stopped at step 12; its newest checkpoint is step-00000012.pt: Resume" in describe_exit(
        130, progress
    )
    assert (
        describe_exit(2, None, "x\nerror: --lr must be positive\n")
        == "refused before training: --lr must be positive"
    )
    assert describe_exit(3, progress, "error: 5 non-finite losses").startswith(
        "failed at step 12: 5 non-finite"
    )
    assert "out of memory at step 12: lower the batch size" in describe_exit(4, progress)
    killed = describe_exit(-signal.SIGKILL, progress)
    assert killed == (
        "the training process was killed (SIGKILL) at step 12; nothing was exported; its newest "
        "checkpoint, step-00000012.pt, is complete (checkpoints are written whole): Resume continues from it"
    )
    assert describe_exit(-signal.SIGKILL, {"step": 3, "checkpoint": None}).endswith(
        "no checkpoint yet: Start again"
    )
    assert "crashed (exit status 1)" in describe_exit(1, progress)


def test_following_reads_complete_metric_rows_once(tmp_path):
    run = FinetuneRun(tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        '{"step": 1, "mse": 0.5}\n{"step": 2, "ms'
    )  # the second row is being written
    assert [r["step"] for r in run.poll().new_rows] == [1]
    with metrics.open("a") as f:
        f.write('e": 0.4}\n{"step": 3, "val_psnr": 20.0}\n')
    assert [r["step"] for r in run.poll().new_rows] == [2, 3]
    assert run.poll().new_rows == []
    metrics.write_text(
        '{"step": 1, "mse": 0.5}\n'
    )  # trimmed by a resume: read again from the start
    assert [r["step"] for r in run.poll().new_rows] == [1]
    (tmp_path / "samples").mkdir()
    for step in (5, 40, 15):
        (tmp_path / "samples" / f"step-{step:08d}.png").write_bytes(b"")
    assert run.poll().sample.name == "step-00000040.png"
    assert run.poll().running is False and run.poll().returncode is None  # never started


def test_a_run_that_did_not_finish_cannot_be_exported(tmp_path):
    run = FinetuneRun(tmp_path)
    run.returncode = 130
    ProgressWriter(tmp_path, total=10, step=0).update(4, state="stopped")
    with pytest.raises(FinetuneError, match="only a finished run is exported"):
        run.export("x")
    assert not user_weights_dir().exists() or not list(user_weights_dir().iterdir())


def test_a_finished_run_exports_once_under_its_name(tmp_path):
    from training.__main__ import main

    data = tmp_path / "d"
    data.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "run"
    settings = FinetuneSettings(
        data=str(data),
        out=str(out),
        steps=2,
        width=0.125,
        image_size=64,
        batch_size=2,
        val_fraction=0.34,
        num_workers=0,
    )
    run = FinetuneRun(out)
    run.start(settings.argv())
    assert run.wait(timeout=HANG_S) == 0, run.log_tail()
    assert f"$ {sys.executable} -m training train" in run.log_tail()
    assert weights_image_size(run.finished_checkpoint()) == 64
    with pytest.raises(FinetuneError, match="not usable as a file name"):
        run.export("../elsewhere")
    path = run.export("garden")
    assert path == user_weights_dir() / "garden.pt"
    metadata = load_checkpoint(path).metadata
    rows = read_metrics(out)
    assert metadata["evaluation"] == {
        **validation_summary(rows),
        "date": metadata["evaluation"]["date"],
    }
    assert (
        metadata["evaluation"]["images"] == 2 and metadata["label"] == "fine-tuned in napari (run)"
    )
    with pytest.raises(FileExistsError, match="choose another name"):
        run.export("garden")
    # a terminal continues the same run (its settings come from OUT/config.json)
    assert main(["train", "--out", str(out), "--resume", "latest", "--max-steps", "3"]) == 0
    assert (
        load_checkpoint(
            run.finished_checkpoint() or out / "checkpoints" / "step-00000003.pt"
        ).training["step"]
        == 3
    )
    assert validation_summary([]) is None

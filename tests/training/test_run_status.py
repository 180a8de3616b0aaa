"""A training run's OUT/progress.json and its exit codes (issue 15). Tiny models, generated
images, CPU."""

from __future__ import annotations

import pytest
import tiny_runs
import torch
from tiny_runs import TINY_NOCLASS, read_metrics

from training.__main__ import main
from training.progress import PROGRESS_FILE, ExitCode, ProgressWriter, read_progress
from training.train import checkpoint_files

images = tiny_runs.images  # the fixture, by name


# ----------------------------------------------------------------------------- progress.json


def test_progress_file_follows_the_run_to_its_end(images, tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(images),
                "--out",
                str(out),
                *TINY_NOCLASS,
                "--max-steps",
                "4",
                "--log-every",
                "2",
                "--val-fraction",
                "0.25",
                "--val-every",
                "2",
            ]
        )
        == 0
    )
    progress = read_progress(out)
    rows = read_metrics(out)
    last_losses = [r for r in rows if "loss_g" in r][-1]
    last_val = [r for r in rows if "val_psnr" in r][-1]
    assert progress["state"] == "finished" and progress["step"] == progress["total"] == 4
    assert progress["eta_s"] == 0.0 and progress["steps_per_s"] > 0
    assert progress["losses"] == {k: last_losses[k] for k in progress["losses"]}
    assert {"mse", "loss_g", "loss_d"} <= set(progress["losses"])
    assert progress["images_per_s"] == last_losses["images_per_s"]
    assert progress["val"]["val_psnr"] == last_val["val_psnr"]
    assert progress["checkpoint"] == str(checkpoint_files(out)[-1])
    assert not list(out.glob(f"*{PROGRESS_FILE}*part*"))  # written atomically: no temporary left


def test_progress_writer_measures_the_rate_from_its_own_start(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("training.progress.time.perf_counter", lambda: clock[0])
    writer = ProgressWriter(tmp_path, total=110, step=10)  # a resumed run: steps 10 -> 110
    clock[0] = 120.0
    writer.update(50, losses={"mse": float("nan")})
    values = read_progress(tmp_path)
    assert values["steps_per_s"] == pytest.approx(2.0)  # 40 steps in 20 s
    assert values["eta_s"] == pytest.approx(30.0)  # 60 left
    assert values["losses"] == {"mse": None}  # JSON has no NaN
    writer.update(60, state="stopped", message="stopped")
    assert (
        read_progress(tmp_path)["state"] == "stopped" and read_progress(tmp_path)["eta_s"] is None
    )
    with pytest.raises(ValueError, match="state must be"):
        writer.update(61, state="paused")
    (tmp_path / PROGRESS_FILE).write_text('{"state": "runn')  # not from the writer: cut off
    assert read_progress(tmp_path) is None


# ----------------------------------------------------------------------------- exit codes


def test_a_diverged_run_exits_3_and_says_so_in_progress(images, tmp_path, monkeypatch, capsys):
    import training.step as train_step

    monkeypatch.setattr(train_step, "mse_ab", lambda pred, target: torch.tensor(float("nan")))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(images),
                "--out",
                str(out),
                *TINY_NOCLASS,
                "--max-steps",
                "5",
                "--max-nonfinite",
                "2",
            ]
        )
        == ExitCode.FAILED
        == 3
    )
    assert "non-finite" in capsys.readouterr().err
    progress = read_progress(out)
    assert progress["state"] == "failed" and "2 non-finite losses in a row" in progress["message"]


def test_out_of_memory_exits_4_with_what_to_do(images, tmp_path, monkeypatch, capsys):
    import training.train as loop

    def no_memory(self, L, ab, rgb=None):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop.Trainer, "train_step", no_memory)
    out = tmp_path / "run"
    assert (
        main(["train", "--data", str(images), "--out", str(out), *TINY_NOCLASS, "--max-steps", "2"])
        == 4
    )
    err = capsys.readouterr().err
    assert "out of memory (CUDA out of memory" in err and "lower --batch-size" in err
    assert read_progress(out)["state"] == "failed"


def test_a_second_interrupt_exits_130_and_progress_says_stopped(
    images, tmp_path, monkeypatch, capsys
):
    import training.train as loop

    step = loop.Trainer.train_step
    calls = []

    def interrupted(self, L, ab, rgb=None):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what the handler raises on a second Ctrl-C
        return step(self, L, ab, rgb)

    monkeypatch.setattr(loop.Trainer, "train_step", interrupted)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(images),
                "--out",
                str(out),
                *TINY_NOCLASS,
                "--max-steps",
                "9",
                "--checkpoint-every",
                "2",
            ]
        )
        == ExitCode.STOPPED
        == 130
    )
    assert "stopped at once" in capsys.readouterr().err
    progress = read_progress(out)
    assert progress["state"] == "stopped" and progress["step"] == 2
    assert (
        progress["checkpoint"].endswith("step-00000002.pt")
        and "second interrupt" in progress["message"]
    )


def test_the_exit_codes_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in (
        "exit status: 0 finished",
        "130 stopped by Ctrl-C or SIGTERM",
        "2 refused before training",
        "3 training failed",
        "4 out of memory",
        "1 an unexpected error",
    ):
        assert phrase in text
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 130]

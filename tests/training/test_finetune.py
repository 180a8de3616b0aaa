"""Fine-tuning support of the training package: --init-from, the validation split and its
metrics, OUT/progress.json and the exit codes (issue 15). Tiny models, generated images, CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_runs import TINY_NOCLASS, colour_images, read_metrics

from napari_chromagan.weights.checkpoint import load_checkpoint
from training import distributed
from training.__main__ import main
from training.config import ConfigError, TrainConfig
from training.data import find_images
from training.evaluate import evaluate
from training.export import export
from training.progress import PROGRESS_FILE, ExitCode, ProgressWriter, read_progress
from training.train import Trainer, checkpoint_files, split_validation


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """16 smooth colour images (a colour per quadrant, blurred), 80x96."""
    return colour_images(tmp_path_factory.mktemp("images"), count=16, seed=1)


@pytest.fixture(scope="module")
def trained(images, tmp_path_factory) -> tuple[Path, Path]:
    """A 2-step tiny run: (its training checkpoint, with a critic; that checkpoint exported)."""
    out = tmp_path_factory.mktemp("start") / "run"
    assert (
        main(["train", "--data", str(images), "--out", str(out), "--max-steps", "2", *TINY_NOCLASS])
        == 0
    )
    (ckpt,) = checkpoint_files(out)
    exported = export(ckpt, out.parent / "start.pt")
    return ckpt, exported


def _trainer(config: TrainConfig) -> Trainer:
    info = distributed.setup("cpu")
    try:
        return Trainer(config, info)
    finally:
        distributed.cleanup()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- --init-from


def test_init_from_loads_the_generator_and_the_critic_when_the_file_has_one(
    images, trained, tmp_path
):
    ckpt_path, exported = trained
    start = load_checkpoint(ckpt_path)
    base = {
        "data": str(images),
        "width": 0.125,
        "image_size": 64,
        "preset": "chromagan-noclass",
        "batch_size": 4,
        "num_workers": 0,
        "sample_every": 0,
    }
    scratch = _trainer(TrainConfig(out=str(tmp_path / "a"), **base))
    from_ckpt = _trainer(TrainConfig(out=str(tmp_path / "b"), init_from=str(ckpt_path), **base))
    from_export = _trainer(TrainConfig(out=str(tmp_path / "c"), init_from=str(exported), **base))
    for trainer in (from_ckpt, from_export):
        assert _same(trainer.generator.state_dict(), start.generator.state_dict())
        assert not _same(trainer.generator.state_dict(), scratch.generator.state_dict())
    # the training checkpoint's critic; the exported file has none, so a fresh (seeded) one
    assert _same(from_ckpt.critic.state_dict(), start.training["critic"])
    assert _same(from_export.critic.state_dict(), scratch.critic.state_dict())
    assert not _same(from_export.critic.state_dict(), start.training["critic"])
    assert from_export.metadata()["fine_tuned_from"]["weights"] == str(exported)
    assert from_export.metadata()["fine_tuned_from"]["steps"] == 2


def test_an_efficientnet_family_file_can_be_fine_tuned_at_another_size(images, tmp_path):
    # the family pools its global stage, so its weights fit any size: --image-size may differ
    # from the file's (the VGG16 family's may not: the test below)
    from napari_chromagan.model.generator import Generator, ModelConfig
    from napari_chromagan.weights.checkpoint import save_checkpoint

    torch.manual_seed(0)
    small = Generator(ModelConfig(width=0.125, image_size=64, trunk="efficientnet-lite0")).eval()
    start = save_checkpoint(tmp_path / "lite.pt", small)
    out = tmp_path / "ft96"
    flags = ["train", "--data", str(images), "--out", str(out), "--init-from", str(start)]
    flags += ["--num-workers", "0", "--preset", "chromagan-noclass", "--batch-size", "2"]
    flags += ["--max-steps", "1", "--sample-every", "0", "--image-size", "96"]
    assert main(flags) == ExitCode.FINISHED
    config = json.loads((out / "config.json").read_text())
    assert (config["width"], config["image_size"], config["trunk"]) == (
        0.125,
        96,
        "efficientnet-lite0",
    )
    result = load_checkpoint(checkpoint_files(out)[-1])
    assert result.config == ModelConfig(width=0.125, image_size=96, trunk="efficientnet-lite0")
    trainer = _trainer(
        TrainConfig(
            out=str(tmp_path / "check"),
            data=str(images),
            init_from=str(start),
            width=0.125,
            image_size=96,
            trunk="efficientnet-lite0",
            preset="chromagan-noclass",
            num_workers=0,
        )
    )
    assert _same(trainer.generator.state_dict(), small.state_dict())  # the file's own weights


def test_init_from_takes_the_models_shape_from_the_file_and_refuses_other_flags(
    images, trained, tmp_path, capsys
):
    _, exported = trained
    out = tmp_path / "ft"
    flags = [
        "train",
        "--data",
        str(images),
        "--out",
        str(out),
        "--init-from",
        str(exported),
        "--num-workers",
        "0",
        "--preset",
        "chromagan-noclass",
        "--batch-size",
        "4",
        "--max-steps",
        "3",
        "--sample-every",
        "0",
    ]
    for conflict, field in (
        (["--width", "0.25"], "width"),
        (["--image-size", "96"], "image_size"),
        (["--trunk", "efficientnet-lite0"], "trunk"),
    ):
        assert main([*flags, *conflict]) == ExitCode.BAD_CONFIG
        err = capsys.readouterr().err
        assert f"contradicts --init-from {exported}" in err and f"{field} = " in err, err
        assert not out.exists()  # refused before anything was written
    # no shape flags: the width and the size come from the file (0.125, 64; the defaults are 1.0, 224)
    assert main([*flags, "--width", "0.125"]) == ExitCode.FINISHED
    config = json.loads((out / "config.json").read_text())
    assert (config["width"], config["image_size"], config["trunk"]) == (0.125, 64, "vgg16")
    assert config["init_from"] == str(exported)
    result = load_checkpoint(checkpoint_files(out)[-1])
    assert result.config == load_checkpoint(exported).config
    assert result.metadata["fine_tuned_from"]["weights"] == str(exported)
    # a resume takes the shape from config.json: the start file is not needed any more
    exported.rename(exported.with_suffix(".moved"))
    try:
        assert (
            main(["train", "--out", str(out), "--resume", "latest", "--max-steps", "4"])
            == ExitCode.FINISHED
        )
    finally:
        exported.with_suffix(".moved").rename(exported)
    assert load_checkpoint(checkpoint_files(out)[-1]).training["step"] == 4


def test_a_fine_tune_first_scores_its_starting_weights(images, trained, tmp_path):
    _, exported = trained
    out = tmp_path / "ft"
    assert (
        main(
            [
                "train",
                "--data",
                str(images),
                "--out",
                str(out),
                "--init-from",
                str(exported),
                "--num-workers",
                "0",
                "--preset",
                "chromagan-noclass",
                "--batch-size",
                "4",
                "--max-steps",
                "2",
                "--sample-every",
                "0",
                "--val-fraction",
                "0.25",
                "--val-every",
                "0",
            ]
        )
        == 0
    )
    before, after = [r for r in read_metrics(out) if "val_psnr" in r]
    start = evaluate(exported, out / "validation.txt", device="cpu", progress=False)["metrics"]
    assert before["step"] == 0 and before["val_psnr"] == pytest.approx(
        start["psnr_64"]["model"], abs=1e-9
    )
    assert before["val_colourfulness"] == pytest.approx(start["colourfulness"]["model"], abs=1e-9)
    assert after["step"] == 2 and after["val_psnr"] != before["val_psnr"]


def test_init_from_names_what_is_missing(images, tmp_path, capsys):
    base = [
        "train",
        "--data",
        str(images),
        "--out",
        str(tmp_path / "x"),
        *TINY_NOCLASS,
        "--max-steps",
        "1",
    ]
    # the test environment has no default weights (conftest hides the packaged file and the cache)
    assert main([*base, "--init-from", "default"]) == ExitCode.BAD_CONFIG
    assert "no ChromaGAN weights found" in capsys.readouterr().err
    assert main([*base, "--init-from", "chromagan-imagenet"]) == ExitCode.BAD_CONFIG
    assert "download-weights chromagan-imagenet" in capsys.readouterr().err
    assert main([*base, "--init-from", str(tmp_path / "absent.pt")]) == ExitCode.BAD_CONFIG
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="drop --init-vgg16"):
        TrainConfig(data="d", out="o", init_from="x.pt", init_vgg16="vgg.pth")


def test_init_from_default_is_what_colorize_uses(images, trained, tmp_path, monkeypatch):
    _, exported = trained
    monkeypatch.setattr("napari_chromagan.weights.lookup.PACKAGED_WEIGHTS", exported)
    out = tmp_path / "ft"
    assert (
        main(
            [
                "train",
                "--data",
                str(images),
                "--out",
                str(out),
                "--init-from",
                "default",
                "--num-workers",
                "0",
                "--preset",
                "chromagan-noclass",
                "--batch-size",
                "4",
                "--max-steps",
                "1",
                "--sample-every",
                "0",
            ]
        )
        == 0
    )
    assert load_checkpoint(checkpoint_files(out)[-1]).metadata["fine_tuned_from"]["weights"] == str(
        exported
    )


# ----------------------------------------------------------------------------- validation


def test_the_validation_split_depends_on_the_files_alone(images):
    paths = find_images(images)
    train_a, held_a = split_validation(paths, 0.25, images)
    train_b, held_b = split_validation(paths[::-1], 0.25, images)
    assert len(held_a) == 4 and len(train_a) == 12
    assert set(held_a) == set(held_b) and set(train_a) == set(train_b)
    assert not set(held_a) & set(train_a)
    assert set(train_a) | set(held_a) == set(paths)
    # adding files keeps the held-out ones held out unless a new file hashes before them
    train_c, held_c = split_validation(paths[:8], 0.5, images)
    assert len(held_c) == 4 and set(held_c) <= set(held_a) | set(train_a)
    assert set(train_c) == set(paths[:8]) - set(held_c)
    assert len(split_validation(paths, 0.001, images)[1]) == 1  # at least one


def test_validation_psnr_and_colourfulness_are_those_evaluate_measures(images, tmp_path):
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
                "--val-fraction",
                "0.25",
                "--val-every",
                "2",
            ]
        )
        == ExitCode.FINISHED
    )
    val = [r for r in read_metrics(out) if "val_psnr" in r]
    assert [r["step"] for r in val] == [0, 2, 4]  # where the run starts, then every 2 steps
    assert all(r["val_images"] == 4 for r in val)
    # the held-out images are not trained on
    ckpt = load_checkpoint(checkpoint_files(out)[-1])
    assert ckpt.metadata["images"] == 12 and ckpt.metadata["validation_images"] == 4
    # the final row scores the final checkpoint: the same numbers as `evaluate` on those files
    _, held = split_validation(find_images(images), 0.25, images)
    listing = out / "validation.txt"  # the run lists its held-out files
    assert listing.read_text().splitlines() == [str(p) for p in held]
    summary = evaluate(checkpoint_files(out)[-1], listing, device="cpu", progress=False)
    metrics = summary["metrics"]
    assert val[-1]["val_psnr"] == pytest.approx(metrics["psnr_64"]["model"], abs=1e-9)
    assert val[-1]["val_psnr_floor"] == pytest.approx(metrics["psnr_64"]["floor"], abs=1e-9)
    assert val[-1]["val_colourfulness"] == pytest.approx(
        metrics["colourfulness"]["model"], abs=1e-9
    )
    assert val[-1]["val_colourfulness_truth"] == pytest.approx(
        metrics["colourfulness"]["truth"], abs=1e-9
    )
    assert 5 < val[-1]["val_psnr"] < 60


def test_validation_from_a_folder_and_the_samples_show_held_out_images(images, tmp_path):
    held = tmp_path / "held"
    held.mkdir()
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, :32] = (200, 30, 40)
    rgb[:, 32:] = (20, 60, 220)
    Image.fromarray(rgb).save(held / "two.png")
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(
        held / "gray.png"
    )  # skipped: no colour truth
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
                "2",
                "--val-data",
                str(held),
                "--val-every",
                "0",
                "--sample-every",
                "2",
            ]
        )
        == 0
    )
    rows = [
        r for r in read_metrics(out) if "val_psnr" in r
    ]  # --val-every 0: at the start and the end only
    assert [r["step"] for r in rows] == [0, 2] and rows[-1]["val_images"] == 1
    # the sample batch is the held-out files (gray.png, two.png), not the training images
    sample = np.asarray(Image.open(out / "samples" / "step-00000002.png")).astype(int)
    assert sample.shape == (3 * 64, 2 * 64, 3)  # gray / colourised / truth rows
    assert np.abs(sample[128:, :64] - 90).max() <= 1
    assert np.abs(sample[128:, 64:] - rgb).max() <= 2


def test_validation_needs_enough_images(images, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                str(images),
                "--out",
                str(tmp_path / "r"),
                *TINY_NOCLASS,
                "--max-steps",
                "1",
                "--val-fraction",
                "0.9",
            ]
        )
        == ExitCode.BAD_CONFIG
    )
    assert "after holding out 14 for validation" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--data",
                str(images),
                "--out",
                str(tmp_path / "r"),
                *TINY_NOCLASS,
                "--max-steps",
                "1",
                "--val-fraction",
                "0.2",
                "--val-data",
                str(images),
            ]
        )
        == ExitCode.BAD_CONFIG
    )
    assert "not both" in capsys.readouterr().err


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

"""The validation split of a training run and the metrics it logs (issue 15). Tiny models,
generated images, CPU."""

from __future__ import annotations

import numpy as np
import pytest
import tiny_runs
from PIL import Image
from tiny_runs import TINY_NOCLASS, read_metrics

from napari_chromagan.weights.checkpoint import load_checkpoint
from training.__main__ import main
from training.data import find_images
from training.evaluate import evaluate
from training.progress import ExitCode
from training.train import checkpoint_files, split_validation

images = tiny_runs.images  # the fixture, by name


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

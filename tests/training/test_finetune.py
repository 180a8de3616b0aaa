"""Fine-tuning support of the training package: --init-from (issue 15; the validation split is
test_validation.py's, OUT/progress.json and the exit codes test_run_status.py's). Tiny models,
generated images, CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_runs
import torch
from tiny_runs import TINY_NOCLASS, read_metrics

from napari_chromagan.weights.checkpoint import load_checkpoint
from training import distributed
from training.__main__ import main
from training.config import ConfigError, TrainConfig
from training.evaluate import evaluate
from training.export import export
from training.progress import ExitCode
from training.train import Trainer, checkpoint_files

images = tiny_runs.images  # the fixture, by name


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

"""Resuming as documented: from any working directory, after a kill during a checkpoint write,
without duplicate metric rows; and ``train --help`` says each default once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tiny_runs import TINY_NOCLASS, colour_images, read_metrics

from training.__main__ import main
from training.train import checkpoint_files

TINY = [*TINY_NOCLASS, "--device", "cpu"]  # on the CPU, where a resume is exact loss for loss


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    return colour_images(folder, count=8, seed=0, size=(80, 72), name="img{}.png")


def _steps(out: Path) -> list[int]:
    return [row["step"] for row in read_metrics(out)]


def test_config_json_holds_absolute_paths_and_resumes_from_another_directory(
    images, tmp_path, monkeypatch
):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "photos").symlink_to(images, target_is_directory=True)
    monkeypatch.chdir(work)
    assert main(["train", "--data", "photos", "--out", "runs/mine", "--max-steps", "2", *TINY]) == 0
    config = json.loads((work / "runs" / "mine" / "config.json").read_text())
    assert config["data"] == str(work / "photos") and config["out"] == str(work / "runs" / "mine")
    # the documented resume, with only --out, from another working directory
    monkeypatch.chdir(elsewhere)
    out = work / "runs" / "mine"
    assert main(["train", "--out", str(out), "--resume", "latest", "--max-steps", "3"]) == 0
    assert _steps(out) == [1, 2, 3]
    assert [p.name for p in checkpoint_files(out)] == ["step-00000002.pt", "step-00000003.pt"]
    assert not (elsewhere / "runs").exists()


def test_a_kill_during_a_checkpoint_write_leaves_nothing_behind_on_the_next_start(
    images, tmp_path, caplog
):
    out = tmp_path / "run"
    common = ["--data", str(images), "--out", str(out), *TINY]
    assert main(["train", *common, "--max-steps", "2", "--checkpoint-every", "2"]) == 0
    # what a SIGKILL during the step-4 checkpoint leaves: its temporary file, and the metric rows
    # logged after the last complete checkpoint (steps 3 and 4), the last one cut off
    stale = out / "checkpoints" / ".step-00000004.pt.0123456789ab.part"
    stale.write_bytes(b"\0" * 4096)
    (out / ".config.json.ba9876543210.part").write_text("{")
    other = out / "checkpoints" / "notes.part"  # not a name atomic_write makes: left alone
    other.write_text("mine\n")
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 3, "loss_g": 1.0}) + "\n" + '{"step": 4, "loss')
    assert _steps_tolerant(out) == [1, 2, 3]
    caplog.set_level("INFO", logger="training")
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--resume",
                "latest",
                "--max-steps",
                "4",
                "--checkpoint-every",
                "2",
            ]
        )
        == 0
    )
    assert not stale.exists() and not (out / ".config.json.ba9876543210.part").exists()
    assert other.read_text() == "mine\n"
    assert _steps(out) == [1, 2, 3, 4]  # each step once: the interrupted run's rows were dropped
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "removed 2 temporary files" in messages
    assert "dropped 2 rows after step 2" in messages


def _steps_tolerant(out: Path) -> list[int]:
    steps = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            pass
    return steps


def test_resume_does_not_need_the_init_file_again(images, tmp_path):
    """The checkpoint holds the trained trunk: a vgg16 --init-vgg16 file that has since moved is
    not read when resuming (it would only be overwritten)."""
    import torch

    from napari_chromagan.model.generator import Generator, ModelConfig

    vgg = tmp_path / "vgg16.pth"
    trunk = Generator(ModelConfig(width=0.125, image_size=64)).trunk
    torch.save({f"features.{k}": v for k, v in trunk.state_dict().items()}, vgg)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(images),
            "--out",
            str(out),
            "--max-steps",
            "1",
            "--init-vgg16",
            str(vgg),
            *TINY,
        ]
    )
    if code != 0:
        pytest.skip("this generator's trunk does not load from a torchvision-style state dict here")
    vgg.unlink()
    assert main(["train", "--out", str(out), "--resume", "latest", "--max-steps", "2"]) == 0
    assert _steps(out) == [1, 2]


def test_train_help_says_each_default_once(capsys):
    from training.__main__ import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    actions = [a for a in sub.choices["train"]._actions if a.help and a.option_strings]
    doubled = [a.option_strings[0] for a in actions if a.help.count("default:") > 1]
    assert doubled == []
    lambda_g = next(a for a in actions if "--lambda-g" in a.option_strings)
    assert lambda_g.help.endswith("(default: the preset's)")
    assert sum("(default:" in a.help for a in actions) >= 20  # the others still say theirs
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "(default: the preset's) (default" not in re.sub(r"\s+", " ", capsys.readouterr().out)


def test_a_learning_rate_given_on_resume_is_the_one_used(images, tmp_path, caplog):
    """load_state_dict restores the saved Adam settings; a --lr given on resume must win."""
    import logging

    from training import checkpoints, distributed
    from training.__main__ import build_parser, config_from_args
    from training.train import Trainer

    out = tmp_path / "run"
    base = ["train", "--data", str(images), "--out", str(out), *TINY]
    assert main([*base, "--max-steps", "1", "--lr", "1e-3"]) == 0
    (ckpt,) = checkpoint_files(out)
    config = config_from_args(
        build_parser().parse_args(
            ["train", "--out", str(out), "--resume", "latest", "--lr", "2.5e-4", "--beta1", "0.9"]
        )
    )
    info = distributed.setup("cpu")
    try:
        trainer = Trainer(config, info, resuming=True)
        with caplog.at_level(logging.INFO, logger="training"):
            checkpoints.load(trainer, ckpt)
    finally:
        distributed.cleanup()
    for optimizer in (trainer.opt_g, trainer.opt_d):
        for group in optimizer.param_groups:
            assert group["lr"] == 2.5e-4 and tuple(group["betas"]) == (0.9, 0.999)
        assert optimizer.state  # the Adam moments of the run are kept
    assert "with lr 0.00025 (the run had 0.001)" in caplog.text
    assert "with betas (0.9, 0.999) (the run had (0.5, 0.999))" in caplog.text
    # and the run goes on with it
    assert (
        main(
            ["train", "--out", str(out), "--resume", "latest", "--max-steps", "2", "--lr", "2.5e-4"]
        )
        == 0
    )
    assert _steps(out) == [1, 2]
    assert json.loads((out / "config.json").read_text())["lr"] == 2.5e-4  # kept for the next resume

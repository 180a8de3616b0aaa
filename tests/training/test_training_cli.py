"""`python -m training`: help texts, flags generated from TrainConfig, config files, export."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from napari_chromagan.model.generator import Generator, ModelConfig
from napari_chromagan.weights.checkpoint import load_checkpoint, save_checkpoint
from training.__main__ import build_parser, config_from_args, main
from training.config import ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m training " + command in capsys.readouterr().out


def test_every_config_field_has_a_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for f in fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name


def test_python_m_training_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "training", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "{train,evaluate,export}" in proc.stdout


def test_config_file_then_flags(tmp_path):
    (tmp_path / "run.toml").write_text(
        'data = "imgs"\nout = "out"\nbatch-size = 4\nlr = 1e-4\npreset = "chromanet"\n'
    )
    args = build_parser().parse_args(
        ["train", "--config", str(tmp_path / "run.toml"), "--lr", "3e-4"]
    )
    config = config_from_args(args)
    assert (config.data, config.batch_size, config.lr, config.preset) == (
        "imgs",
        4,
        3e-4,
        "chromanet",
    )
    assert (config.effective_lambda_g, config.effective_lambda_s) == (0.0, 0.003)
    (tmp_path / "bad.json").write_text(json.dumps({"data": "x", "out": "y", "learning_rate": 1}))
    with pytest.raises(ConfigError, match="learning_rate"):
        config_from_args(
            build_parser().parse_args(["train", "--config", str(tmp_path / "bad.json")])
        )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "batch-size"),
        (["--image-size", "100"], "model size"),
        (["--lambda-g", "-1"], "lambda-g"),
    ],
)
def test_bad_values_are_refused_with_the_flag_named(flags, message, capsys):
    assert main(["train", "--data", "d", "--out", "o", *flags]) == 2
    assert message in capsys.readouterr().err


def test_missing_data_or_out(capsys):
    assert main(["train", "--data", "x"]) == 2
    assert "--out are required" in capsys.readouterr().err


def test_export_writes_the_generator_only(tmp_path, capsys):
    torch.manual_seed(0)
    generator = Generator(ModelConfig(width=0.125, image_size=64))
    ckpt = tmp_path / "step-00000010.pt"
    training_state = {
        "config": {"preset": "chromagan-noclass", "lr": 2e-4, "teacher": None},
        "step": 10,
        "critic": {"w": torch.zeros(3)},
    }
    save_checkpoint(
        ckpt,
        generator,
        {"variant": "chromagan-noclass", "class_head_trained": False, "steps": 10},
        training_state,
    )
    (tmp_path / "summary.json").write_text(
        json.dumps({"metrics": {"psnr_224": {"model": 23.1, "floor": 22.0}}})
    )
    out = tmp_path / "model.pt"
    assert (
        main(
            [
                "export",
                str(ckpt),
                "-o",
                str(out),
                "--evaluation",
                str(tmp_path / "summary.json"),
                "--label",
                "small demo model",
            ]
        )
        == 0
    )
    exported = load_checkpoint(out)
    assert exported.training is None
    assert exported.metadata["variant"] == "chromagan-noclass" and exported.metadata["steps"] == 10
    assert exported.metadata["class_head_trained"] is False
    assert exported.metadata["evaluation"]["metrics"]["psnr_224"]["model"] == 23.1
    assert exported.metadata["label"] == "small demo model"
    assert exported.metadata["training_config"] == {"preset": "chromagan-noclass", "lr": 2e-4}
    for k, v in generator.state_dict().items():
        assert torch.equal(exported.generator.state_dict()[k], v)
    # never overwritten silently
    assert main(["export", str(ckpt), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    half = tmp_path / "half.pt"
    assert main(["export", str(ckpt), "-o", str(half), "--half"]) == 0
    assert half.stat().st_size < 0.6 * out.stat().st_size
    assert load_checkpoint(half).metadata["weights_dtype"] == "float16"

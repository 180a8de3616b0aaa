"""The moving average of the generator's weights (``--ema-decay``): its arithmetic, what the
checkpoints hold, exact resume, export, and the flags' checks (tiny runs on the CPU)."""

from __future__ import annotations

import pytest
import tiny_runs
import torch
from tiny_runs import noclass_train_args

from napari_chromagan.model.generator import Generator, ModelConfig
from napari_chromagan.weights.checkpoint import load_checkpoint
from training.__main__ import main
from training.averaging import WeightAverage
from training.train import checkpoint_files

images = tiny_runs.images  # the fixture, by name


def _tiny() -> Generator:
    return Generator(ModelConfig(width=0.125, image_size=64))


def test_the_average_follows_the_decay_formula_and_copies_integer_buffers():
    torch.manual_seed(0)
    model = _tiny()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, 0.9)
    assert average.updates == 0 and not average.average.training
    assert not any(p.requires_grad for p in average.average.parameters())
    seen = []
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(1.0)
                m.num_batches_tracked.add_(7)
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        average.update(model)
    assert average.updates == 3
    got = average.average.state_dict()
    for key, value in got.items():
        if value.is_floating_point():
            expected = start[key]
            for weights in seen:
                expected = 0.9 * expected + 0.1 * weights[key]
            torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=key)
            assert not torch.equal(value, seen[-1][key]) or torch.equal(start[key], seen[-1][key])
        else:  # the batch counter is the trained network's, not a fraction of it
            assert torch.equal(value, seen[-1][key]), key


def test_the_average_refuses_a_bad_decay_and_another_architecture():
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(_tiny(), 1.0)
    average = WeightAverage(_tiny(), 0.99)
    with pytest.raises(ValueError, match="different architectures"):
        average.update(
            Generator(ModelConfig(width=0.125, image_size=64, trunk="efficientnet-lite0"))
        )


def test_checkpoints_hold_the_average_and_resume_reproduces_an_uninterrupted_run(images, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    ema = ("--ema-decay", "0.5", "--batch-size", "3")
    assert main(noclass_train_args(images, whole, 6, *ema)) == 0
    assert main(noclass_train_args(images, split, 3, *ema)) == 0
    assert main(["train", "--out", str(split), "--resume", "latest", "--max-steps", "6"]) == 0
    a, b = (load_checkpoint(checkpoint_files(run)[-1]) for run in (whole, split))
    assert a.metadata["ema_decay"] == 0.5 and a.training["ema_updates"] == 6
    for key, value in a.generator.state_dict().items():
        assert torch.equal(value, b.generator.state_dict()[key]), key
        assert torch.equal(
            a.training["generator_trained"][key], b.training["generator_trained"][key]
        )
    # the checkpoint's generator is the average, not the trained weights
    trained = a.training["generator_trained"]
    differ = [k for k, v in a.generator.state_dict().items() if v.is_floating_point()]
    assert any(not torch.equal(a.generator.state_dict()[k], trained[k]) for k in differ)


def test_export_writes_the_average_or_the_trained_weights(images, tmp_path, capsys):
    run, plain = tmp_path / "run", tmp_path / "plain"
    assert main(noclass_train_args(images, run, 2, "--ema-decay", "0.9")) == 0
    assert main(noclass_train_args(images, plain, 2)) == 0
    exported = tmp_path / "w.pt"
    assert main(["export", str(checkpoint_files(run)[-1]), "-o", str(exported)]) == 0
    ckpt, source = load_checkpoint(exported), load_checkpoint(checkpoint_files(run)[-1])
    assert ckpt.metadata["ema_decay"] == 0.9 and not ckpt.training
    for key, value in ckpt.generator.state_dict().items():
        assert torch.equal(value, source.generator.state_dict()[key]), key
    without = load_checkpoint(checkpoint_files(plain)[-1])
    assert "ema_decay" not in without.metadata and "generator_trained" not in without.training
    # --trained-weights: the weights being trained, which the average is not
    trained_file = tmp_path / "trained.pt"
    argv = ["export", str(checkpoint_files(run)[-1]), "-o", str(trained_file), "--trained-weights"]
    assert main(argv) == 0
    trained = load_checkpoint(trained_file)
    assert "ema_decay" not in trained.metadata
    assert trained.metadata["trained_weights_of_averaged_run"] == {"ema_decay": 0.9}
    for key, value in trained.generator.state_dict().items():
        assert torch.equal(value, source.training["generator_trained"][key]), key
    refused = [
        "export",
        str(checkpoint_files(plain)[-1]),
        "-o",
        str(tmp_path / "x.pt"),
        "--trained-weights",
    ]
    assert main(refused) == 2
    assert "holds no moving average" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_bad_decays_and_a_resume_with_another_decay_are_refused(images, tmp_path, capsys):
    for bad in ("0", "1", "1.5", "-0.1"):
        assert main(noclass_train_args(images, tmp_path / f"bad{bad}", 1, "--ema-decay", bad)) == 2
        assert "--ema-decay must be between 0 and 1" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(noclass_train_args(images, out, 1, "--ema-decay", "0.9")) == 0
    resumed = noclass_train_args(images, out, 2, "--ema-decay", "0.99")
    assert main([*resumed, "--resume", "latest"]) == 2
    assert "ema_decay=0.9" in capsys.readouterr().err

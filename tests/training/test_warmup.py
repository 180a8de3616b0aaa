"""The warm-ups at a run's start (tiny runs on the CPU): ``--critic-warmup N`` trains the critic
alone for N steps; ``--lr-warmup N`` ramps each network's learning rate over its first N updates."""

from __future__ import annotations

import pytest
import tiny_runs
import torch
from tiny_runs import noclass_train_args, read_metrics

from napari_chromagan.weights.checkpoint import load_checkpoint
from training.__main__ import main
from training.train import checkpoint_files

images = tiny_runs.images  # the fixture, by name


def _parameters(state: dict[str, torch.Tensor], names: set[str]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k in names}


def test_the_generator_stays_put_while_the_critic_warms_up_then_trains(images, tmp_path, caplog):
    out = tmp_path / "run"
    flags = ("--critic-warmup", "2", "--checkpoint-every", "1", "--keep-checkpoints", "5")
    with caplog.at_level("INFO", logger="training"):
        assert main(noclass_train_args(images, out, 4, *flags)) == 0
    assert "critic warm-up: steps 1 to 2 train the critic alone" in caplog.text
    ckpts = [load_checkpoint(p) for p in checkpoint_files(out)]
    assert [c.training["step"] for c in ckpts] == [1, 2, 3, 4]
    names = {n for n, _ in ckpts[0].generator.named_parameters()}  # BatchNorm statistics move
    weights = [_parameters(c.generator.state_dict(), names) for c in ckpts]
    critics = [c.training["critic"] for c in ckpts]

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return all(torch.equal(a[k], b[k]) for k in a)

    assert same(weights[0], weights[1])  # step 2: still the initial weights
    assert not same(weights[1], weights[2]) and not same(weights[2], weights[3])
    assert not same(critics[0], critics[1])  # the critic trains from the first step
    # the warm-up steps log the generator's losses all the same
    rows = read_metrics(out)
    assert all(r["mse"] > 0 and "loss_g" in r and "loss_d" in r for r in rows)
    # the generator's Adam has not stepped during the warm-up: 2 of 4 steps taken
    assert int(next(iter(ckpts[-1].training["optimizer_generator"]["state"].values()))["step"]) == 2


def test_a_warm_up_without_a_critic_or_below_zero_is_refused(images, tmp_path, capsys):
    chromanet = [
        *noclass_train_args(images, tmp_path / "a", 1, "--critic-warmup", "5"),
        "--preset",
        "chromanet",
    ]
    assert main(chromanet) == 2
    assert "--critic-warmup trains the critic, but this run has none" in capsys.readouterr().err
    assert main(noclass_train_args(images, tmp_path / "b", 1, "--critic-warmup", "-1")) == 2
    assert "--critic-warmup must not be negative" in capsys.readouterr().err


def _lrs(path) -> tuple[float, float]:
    """The (generator, critic) learning rates a checkpoint's optimizers last used."""
    training = load_checkpoint(path).training
    return tuple(
        training[name]["param_groups"][0]["lr"]
        for name in ("optimizer_generator", "optimizer_critic")
    )


def test_the_learning_rates_ramp_over_each_networks_first_updates(images, tmp_path):
    out = tmp_path / "run"
    flags = ("--lr", "0.001", "--lr-warmup", "2", "--critic-warmup", "1")
    every = ("--checkpoint-every", "1", "--keep-checkpoints", "5")
    assert main(noclass_train_args(images, out, 4, *flags, *every)) == 0
    got = [_lrs(p) for p in checkpoint_files(out)]
    # step 1: the critic's first update (the generator warms up its critic); step 2: the
    # generator's first update and the critic's second; then both at --lr
    expected = [(0.001, 0.0005), (0.0005, 0.001), (0.001, 0.001), (0.001, 0.001)]
    for (g, d), (eg, ed) in zip(got[1:], expected[1:], strict=True):
        assert g == pytest.approx(eg) and d == pytest.approx(ed)
    assert got[0][1] == pytest.approx(0.0005)


def test_a_resume_in_the_middle_of_the_ramp_reproduces_an_uninterrupted_run(
    images, tmp_path, caplog
):
    whole, split = tmp_path / "whole", tmp_path / "split"
    flags = ("--lr-warmup", "4", "--batch-size", "3")
    assert main(noclass_train_args(images, whole, 5, *flags)) == 0
    assert main(noclass_train_args(images, split, 2, *flags)) == 0
    with caplog.at_level("INFO", logger="training"):
        assert main(["train", "--out", str(split), "--resume", "latest", "--max-steps", "5"]) == 0
    assert "the run had" not in caplog.text  # the saved ramp's rate is not a change of --lr
    a, b = read_metrics(whole), read_metrics(split)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5]
    for x, y in zip(a, b, strict=True):
        assert x["loss_g"] == y["loss_g"] and x["loss_d"] == y["loss_d"], x["step"]
    assert main(noclass_train_args(images, tmp_path / "bad", 1, "--lr-warmup", "-2")) == 2

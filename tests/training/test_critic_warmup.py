"""``--critic-warmup N``: the run's first N steps train the critic alone (tiny runs on the CPU)."""

from __future__ import annotations

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

"""The step timer the training benchmark uses: phases are named, timed, and change nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from training import distributed
from training.config import TrainConfig
from training.steptimer import StepTimer
from training.teacher import VGG16Classifier
from training.train import Trainer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("timer")
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    torch.manual_seed(0)
    torch.save(VGG16Classifier(base=4, hidden=16).state_dict(), folder / "vgg.pth")
    return folder


def _trainer(folder) -> Trainer:
    config = TrainConfig(
        data=str(folder),
        out=str(folder / "out"),
        preset="chromagan",
        teacher=str(folder / "vgg.pth"),
        width=0.125,
        image_size=32,
        batch_size=2,
        num_workers=0,
        sample_every=0,
        device="cpu",
    )
    return Trainer(config, distributed.setup("cpu"))


def test_timed_step_names_every_phase_and_equals_an_untimed_step(setup):
    g = torch.Generator().manual_seed(1)
    L, ab = torch.rand(2, 1, 32, 32, generator=g), torch.rand(2, 2, 32, 32, generator=g) * 60 - 30
    plain, timed = _trainer(setup), _trainer(setup)
    timed.timer = StepTimer("cpu")
    expected = plain.train_step(L, ab)
    got = timed.train_step(L, ab)
    assert got == expected  # timing changes nothing, bit for bit
    assert set(expected) == {
        "mse",
        "kl",
        "adversarial",
        "loss_g",
        "disc_real",
        "disc_fake",
        "disc_gp",
        "loss_d",
    }
    phases = timed.timer.per_step(1)
    assert list(phases) == [
        "generator forward",
        "teacher forward + KL",
        "critic on fake",
        "finite check",
        "generator backward",
        "generator update",
        "fake for critic",
        "critic forward + GP",
        "critic backward",
        "critic update",
        "losses to host",
    ]
    assert all(s > 0 for s in phases.values())
    assert timed.timer.calls["critic update"] == 1
    timed.train_step(L, ab)
    assert timed.timer.calls["generator forward"] == 2
    assert timed.timer.per_step(2)["generator forward"] == pytest.approx(
        timed.timer.seconds["generator forward"] / 2
    )
    timed.timer.reset()
    assert timed.timer.seconds == {} and timed.timer.calls == {}
    with pytest.raises(ValueError, match="steps must be >= 1"):
        timed.timer.per_step(0)

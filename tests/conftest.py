"""Shared fixtures: small generators with generated weights; nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from napari_chromagan.model import Generator, ModelConfig

TINY = ModelConfig(width=0.125, image_size=64)


def make_generator(config: ModelConfig = TINY, seed: int = 0) -> Generator:
    """A generator with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    g = Generator(config)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        # a non-zero output bias, so that the colours are not all gray
        g.decoder[-3].bias.copy_(torch.tensor([0.8, -0.6]))
    return g.eval()


@pytest.fixture
def tiny_generator() -> Generator:
    return make_generator()


@pytest.fixture(autouse=True)
def _isolated_weights(monkeypatch, tmp_path_factory):
    """Never look at (or write) the user's real weights cache, environment or settings."""
    monkeypatch.setenv("NAPARI_CHROMAGAN_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("NAPARI_CHROMAGAN_WEIGHTS", raising=False)
    # the shipped demo model is the last fallback; tests that want it ask for it
    monkeypatch.setattr("napari_chromagan.weights.PACKAGED_WEIGHTS", tmp_path_factory.mktemp("none") / "absent.pt")
    monkeypatch.setenv("NAPARI_CHROMAGAN_SETTINGS", str(tmp_path_factory.mktemp("config") / "settings.json"))

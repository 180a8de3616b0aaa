"""The network the engine runs (model/inference.py): BatchNorm folded, weights pre-cast for
autocast; the same results as the generator it came from, which it never modifies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_generator

from napari_chromagan import Colorizer
from napari_chromagan.model.generator import ModelConfig
from napari_chromagan.model.inference import fold_batchnorm, inference_network

LITE0 = ModelConfig(width=0.125, image_size=64, trunk="efficientnet-lite0")


@pytest.fixture
def lite0():
    return make_generator(LITE0)  # non-trivial BatchNorm statistics and affine parameters


def _state(generator):
    return {k: v.clone() for k, v in generator.state_dict().items()}


def _ab(network, x, autocast=False):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        ab, probs = network(x, with_class=True)
    return ab.float(), probs.float()


def test_folding_removes_every_trunk_batchnorm_and_keeps_the_output(lite0):
    x = torch.rand(3, 1, 64, 64)
    before = _state(lite0)
    ab, probs = _ab(lite0, x)
    network = inference_network(lite0, None)
    assert network is not lite0
    trunk_bns = [m for m in network.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert trunk_bns == []  # all 49 folded; the paper's mid-level BatchNorms follow a ReLU
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules()) == 2
    folded_ab, folded_probs = _ab(network, x)
    torch.testing.assert_close(folded_ab, ab, rtol=0, atol=2e-5)
    torch.testing.assert_close(folded_probs, probs, rtol=1e-4, atol=1e-6)
    # the given generator is untouched
    after = lite0.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert fold_batchnorm(network) == 0  # nothing left to fold


def test_pre_cast_weights_give_autocast_bit_for_bit(lite0):
    x = torch.rand(2, 1, 64, 64)
    folded = inference_network(lite0, None)
    cast = inference_network(lite0, torch.bfloat16)
    convs = [m for m in cast.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    bns = [m for m in cast.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.weight.dtype == torch.float32 for m in bns)
    for got, want in zip(_ab(cast, x, autocast=True), _ab(folded, x, autocast=True), strict=True):
        assert torch.equal(got, want)


def test_the_vgg16_family_in_float32_runs_as_given():
    generator = make_generator()
    assert inference_network(generator, None) is generator
    cast = inference_network(generator, torch.bfloat16)
    assert cast is not generator
    assert all(p.dtype == torch.float32 for p in generator.parameters())


def test_folding_needs_eval_mode(lite0):
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(lite0.train())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_engine_runs_the_rewritten_network_with_the_same_colours(lite0, precision):
    plane = (np.random.default_rng(0).random((80, 96)) * 255).astype(np.uint8)
    reference = Colorizer(make_generator(LITE0), "cpu", precision="fp32")
    reference.generator = make_generator(LITE0)  # the generator as built: BatchNorm in place
    want = reference.colorize(plane)
    colorizer = Colorizer(lite0, "cpu", precision=precision)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in colorizer.generator.trunk.modules())
    got = colorizer.colorize(plane)
    difference = np.abs(got.rgb.astype(int) - want.rgb.astype(int))
    # float32: rounding only; bf16: bf16's own rounding (measured: at most 1, mean 0.09, the same
    # as the unrewritten generator under bf16 autocast)
    assert difference.max() <= (1 if precision == "fp32" else 3), difference.max()
    assert difference.mean() <= (0.01 if precision == "fp32" else 0.3), difference.mean()


def test_a_network_rewritten_for_bf16_runs_again_in_float32(lite0):
    """A colourizer built from another's network (the CPU fallback of an out-of-memory GPU
    run does this) gets float32 weights back when it runs without autocast."""
    x = torch.rand(2, 1, 64, 64)
    for generator in (lite0, make_generator()):
        cast = inference_network(generator, torch.bfloat16)
        again = inference_network(cast, None)
        assert again is not cast
        assert all(p.dtype == torch.float32 for p in again.parameters())
        assert all(p.dtype == torch.bfloat16 for p in cast.trunk.parameters())  # not modified
        ab, _ = _ab(again, x)
        assert torch.isfinite(ab).all()
        assert inference_network(again, None) is again  # nothing left to rewrite
    plane = np.zeros((32, 32), np.uint8)
    bf16 = Colorizer(lite0, "cpu", precision="bf16")
    fp32 = Colorizer(bf16.generator, "cpu", precision="fp32")
    assert fp32.colorize(plane).rgb.shape == (32, 32, 3)

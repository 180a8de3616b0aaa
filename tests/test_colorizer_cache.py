"""The colourizer factory's CPU fallback for a caller's Colorizer, and its host-memory copy."""

from __future__ import annotations

import numpy as np
import torch
from conftest import make_generator
from torch import nn

from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.napari.colorizer_cache import colorizer_factory, cpu_copy


def test_cpu_copy_copies_each_tensor_once_to_the_host(monkeypatch):
    """No tensor goes through deepcopy (which would copy it on its own device first, the
    device that just ran out of memory); tied tensors stay tied; nothing aliases the source."""
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    module[2].weight.requires_grad_(False)
    module.tied = module[0]  # the same submodule twice: its tensors must be copied once

    def refuse(self, memo):
        raise AssertionError("a tensor was deep-copied")

    monkeypatch.setattr(torch.Tensor, "__deepcopy__", refuse)
    monkeypatch.setattr(nn.Parameter, "__deepcopy__", refuse)
    copied = cpu_copy(module)
    monkeypatch.undo()

    source = dict(module.state_dict(keep_vars=True))
    target = dict(copied.state_dict(keep_vars=True))
    assert source.keys() == target.keys()
    for name, tensor in source.items():
        assert torch.equal(target[name], tensor), name
        assert target[name].data_ptr() != tensor.data_ptr(), f"{name} aliases the source"
        assert isinstance(target[name], nn.Parameter) == isinstance(tensor, nn.Parameter), name
        assert target[name].requires_grad == tensor.requires_grad, name
    assert copied.tied is copied[0] and copied.tied.weight is copied[0].weight
    copied[0].weight.data.add_(1.0)
    assert not torch.equal(copied[0].weight, module[0].weight)


def test_the_cpu_fallback_for_a_gpu_colorizer_copies_it_and_keeps_its_precision():
    given = Colorizer(make_generator(), "cpu", precision="fp32")
    before = {k: v.clone() for k, v in given.generator.state_dict().items()}
    given.device = torch.device("cuda", 0)  # a stand-in: the fallback only reads the device
    colorizer_for, device = colorizer_factory(given, "auto")
    assert device == "cuda:0" and colorizer_for("cuda:0") is given

    fallback = colorizer_for("cpu")
    assert fallback is not given and fallback.device == torch.device("cpu")
    assert fallback.precision == "fp32" and fallback.autocast_dtype is None
    image = np.linspace(0, 255, 24 * 32, dtype=np.float32).reshape(24, 32).astype(np.uint8)
    given.device = torch.device("cpu")
    np.testing.assert_array_equal(fallback.colorize(image).rgb, given.colorize(image).rgb)
    for name, tensor in given.generator.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} of the caller's network changed"

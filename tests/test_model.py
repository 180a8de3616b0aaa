from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_chromagan.model.generator import (
    Critic,
    Generator,
    ModelConfig,
    load_vgg16_trunk,
    vgg16_to_trunk_state_dict,
)
from napari_chromagan.model.same_padding import SameConv2d


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def full_generator() -> Generator:
    torch.manual_seed(0)
    return Generator().eval()


def test_parameter_counts_match_the_paper(full_generator):
    assert trainable(full_generator) == 171_166_090
    assert trainable(full_generator.class_head) == 123_642_856
    assert trainable(full_generator.trunk) == 7_635_264
    # BatchNorm running statistics are buffers: 6 layers, mean and variance.
    stats = sum(b.numel() for n, b in full_generator.named_buffers() if "running" in n)
    assert stats == 5_632
    assert trainable(full_generator) - trainable(full_generator.class_head) == 47_523_234
    assert trainable(Critic()) == 2_764_737


def test_full_generator_shapes_and_ranges(full_generator):
    L = torch.rand(2, 1, 224, 224)
    with torch.inference_mode():
        ab, probs = full_generator(L)
        ab_only, none = full_generator(L, with_class=False)
    assert ab.shape == (2, 2, 224, 224) and probs.shape == (2, 1000)
    assert none is None
    assert torch.equal(ab, ab_only)
    assert 0 < ab.min() and ab.max() < 1
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
    assert (probs >= 0).all()


def test_output_is_nearest_upsampled_from_112(tiny_generator):
    with torch.inference_mode():
        ab, _ = tiny_generator(torch.rand(1, 1, 64, 64))
    # every 2x2 block is constant: the last layer is a nearest x2 of a 32x32 (=S/2) map
    assert torch.equal(ab[..., ::2, ::2], ab[..., 1::2, 1::2])
    assert torch.equal(ab[..., ::2, ::2], ab[..., 1::2, ::2])


def test_logits_flag_gives_log_softmax_consistent_output(tiny_generator):
    L = torch.rand(3, 1, 64, 64)
    with torch.inference_mode():
        _, probs = tiny_generator(L)
        _, logits = tiny_generator(L, logits=True)
    torch.testing.assert_close(torch.softmax(logits, 1), probs)


def test_wrong_input_shape_is_rejected(tiny_generator):
    with pytest.raises(ValueError, match=r"\(N, 1, 64, 64\)"):
        tiny_generator(torch.rand(1, 3, 64, 64))


def test_width_factor_scales_channels():
    g = Generator(ModelConfig(width=0.25))
    assert g.trunk[0].out_channels == 16
    assert g.global_dense[0].in_features == 7 * 7 * 128
    assert g.class_head[-1].out_features == 1000
    assert trainable(g) < trainable(Generator()) / 10


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "groups"),
    [
        *[(28, 3, 2, 1), (14, 3, 2, 1), (224, 4, 2, 1), (28, 4, 1, 1), (7, 3, 1, 1)],
        # depthwise without a bias, as in the EfficientNet trunk's stride-2 stages
        *[(112, 3, 2, 3), (15, 5, 2, 3), (14, 5, 1, 3)],
    ],
)
def test_same_conv_matches_tensorflow_padding(size, kernel, stride, groups):
    """Reference: TF SAME pads total = max((ceil(n/s)-1)*s + k - n, 0), the extra pixel after."""
    torch.manual_seed(1)
    out_channels = 3 if groups > 1 else 4
    conv = SameConv2d(3, out_channels, kernel, stride, groups=groups, bias=groups == 1)
    assert (conv.bias is None) == (groups > 1)
    x = torch.randn(1, 3, size, size)
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel - size, 0)
    before, after = total // 2, total - total // 2
    padded = F.pad(x, (before, after, before, after))
    expected = F.conv2d(padded, conv.weight, conv.bias, stride, groups=groups)
    got = conv(x)
    assert got.shape[-1] == out_size
    torch.testing.assert_close(got, expected)
    if total % 2:  # asymmetric: PyTorch's symmetric padding would shift the result
        sym = F.conv2d(x, conv.weight, conv.bias, stride, padding=total // 2 + 1, groups=groups)[
            ..., :out_size, :out_size
        ]
        assert not torch.allclose(got, sym)


def test_global_trunk_stride2_pads_bottom_right_only(full_generator):
    """A numpy reference of the first strided conv: output (i, j) sees input rows 2i..2i+2."""
    conv = full_generator.global_trunk[0][0]
    x = torch.randn(1, 512, 28, 28)
    with torch.inference_mode():
        y = conv(x)
    xn, w = x[0].numpy().astype(np.float64), conv.weight.detach().numpy().astype(np.float64)
    padded = np.pad(xn, ((0, 0), (0, 1), (0, 1)))
    for i, j in [(0, 0), (13, 13), (5, 9)]:
        patch = padded[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
        ref = np.einsum("chw,ochw->o", patch, w) + conv.bias.detach().numpy()
        np.testing.assert_allclose(y[0, :, i, j].numpy(), ref, rtol=1e-4, atol=1e-4)


def test_batchnorm_follows_relu_with_keras_eps(full_generator):
    block = full_generator.global_trunk[0]
    assert isinstance(block[1], torch.nn.ReLU) and isinstance(block[2], torch.nn.BatchNorm2d)
    assert block[2].eps == 1e-3 and block[2].momentum == pytest.approx(0.01)


def test_dense_input_is_flattened_in_keras_hwc_order():
    """dense_1 weight column k must see element k of the NHWC flatten (h, w, c)."""
    g = Generator(ModelConfig(width=0.0625, image_size=64)).eval()
    captured: dict[str, torch.Tensor] = {}

    def keep(name, pick):
        def hook(module, inputs, output):
            captured[name] = pick(inputs, output)

        return hook

    g.global_dense[0].register_forward_hook(keep("in", lambda i, o: i[0]))
    g.global_trunk.register_forward_hook(keep("g", lambda i, o: o))
    with torch.inference_mode():
        g(torch.rand(1, 1, 64, 64), with_class=False)
    nhwc = captured["g"].permute(0, 2, 3, 1).reshape(1, -1)
    assert torch.equal(captured["in"], nhwc)


def _fake_vgg16_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout vgg16 state dict (features and classifier) with random values."""
    gen = torch.Generator().manual_seed(seed)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    state, index, cin = {}, 0, 3
    for item in cfg:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(item, cin, 3, 3, generator=gen) * 0.05
        state[f"features.{index}.bias"] = torch.randn(item, generator=gen) * 0.05
        cin, index = item, index + 2
    state["classifier.6.weight"] = torch.zeros(1000, 4096)
    return state


def test_torchvision_vgg16_state_dict_loads_into_trunk_and_changes_output():
    torch.manual_seed(0)
    g = Generator().eval()
    L = torch.rand(1, 1, 224, 224)
    with torch.inference_mode():
        before, _ = g(L, with_class=False)
    vgg = _fake_vgg16_state()
    load_vgg16_trunk(g, vgg)
    assert torch.equal(g.trunk[0].weight, vgg["features.0.weight"])
    assert torch.equal(g.trunk[21].bias, vgg["features.21.bias"])
    # torchvision's features.N is the trunk's N: the state dict also loads directly
    g.trunk.load_state_dict(vgg16_to_trunk_state_dict(vgg))
    with torch.inference_mode():
        after, _ = g(L, with_class=False)
    assert (after - before).abs().max() > 1e-4


def test_vgg16_errors_name_the_problem():
    with pytest.raises(KeyError, match=r"features\.0\.weight is missing"):
        vgg16_to_trunk_state_dict({"classifier.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"width=1\.0"):
        load_vgg16_trunk(Generator(ModelConfig(width=0.5)), _fake_vgg16_state())


def test_model_config_validation_and_round_trip():
    cfg = ModelConfig(width=0.5, image_size=96)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"width": 0}, {"image_size": 100}, {"num_classes": 0}):
        (field,) = bad
        with pytest.raises(ValueError, match=f"ModelConfig.{field} must be"):
            ModelConfig(**bad)
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"width": 1.0, "depth": 3})


def test_critic_gives_a_28x28_patch_map_for_224():
    c = Critic(ModelConfig(width=0.125))
    out = c(torch.rand(2, 1, 224, 224), torch.rand(2, 2, 224, 224))
    assert out.shape == (2, 1, 28, 28)

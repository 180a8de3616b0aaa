"""The one VGG16 layout, against torchvision's configuration "D" written out here."""

from __future__ import annotations

import pytest
from torch import nn

from napari_chromagan.model import vgg16
from napari_chromagan.model.generator import Generator, ModelConfig

# torchvision.models.vgg: cfgs["D"], the 16-layer network ("M" is a 2x2 max-pool)
TORCHVISION_D = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
]


def _describe(seq: nn.Sequential) -> list[object]:
    out: list[object] = []
    for m in seq:
        if isinstance(m, nn.Conv2d):
            assert (m.kernel_size, m.padding, m.stride) == ((3, 3), (1, 1), (1, 1))
            out.append(m.out_channels)
        elif isinstance(m, nn.MaxPool2d):
            assert (m.kernel_size, m.stride) == (2, 2)
            out.append("M")
        else:
            assert isinstance(m, nn.ReLU) and m.inplace
    return out


def test_the_features_are_torchvisions_configuration_d():
    features = vgg16.vgg16_features()
    assert _describe(features) == TORCHVISION_D
    assert len(features) == 31  # 13 convolutions, 13 ReLUs, 5 pools
    # the Keras names, in order, and the index each convolution has in torchvision's features
    assert vgg16.CONV_NAMES[0] == "block1_conv1" and vgg16.CONV_NAMES[-1] == "block5_conv3"
    assert len(vgg16.CONV_NAMES) == 13
    for name in vgg16.CONV_NAMES:
        conv = features[vgg16.CONV_INDEX[name]]
        assert isinstance(conv, nn.Conv2d) and conv.out_channels == vgg16.CONV_CHANNELS[name], name


def test_the_generator_trunk_is_features_up_to_block4_conv3():
    # torchvision's features[:23]: through block4_conv3 and its ReLU, without the pool
    trunk = Generator(ModelConfig(width=0.125, image_size=64)).trunk
    assert _describe(trunk) == [round(c * 0.125) if c != "M" else c for c in TORCHVISION_D[:13]]
    assert len(trunk) == 23 and vgg16.TRUNK_CONV_NAMES[-1] == "block4_conv3"


def test_an_unknown_layer_is_refused():
    with pytest.raises(ValueError, match="unknown VGG16 layer 'block6_conv1'"):
        vgg16.vgg16_features("block6_conv1")

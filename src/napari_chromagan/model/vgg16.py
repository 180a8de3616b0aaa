"""VGG16's convolutional layout, written once.

The generator's trunk (VGG16 up to ``block4_conv3``, :mod:`napari_chromagan.model.generator`), training's
VGG16 class teacher (all thirteen convolutions, ``training.teacher``) and both Keras readers
(the authors' generator file, :mod:`napari_chromagan.weights.keras_import`, and Keras' VGG16 files in
``training.teacher``) take the layer names, channel counts and module indices from here.

The layout is torchvision's ``vgg16().features``: each 3x3 convolution (padding 1) is followed by
a ReLU, each block by a 2x2 max-pool, so that torchvision state dicts load by index. The Keras
names are those of ``keras.applications.VGG16`` (``block1_conv1`` ... ``block5_conv3``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = [
    "CONV_CHANNELS",
    "CONV_INDEX",
    "CONV_NAMES",
    "TRUNK_CONV_INDICES",
    "TRUNK_CONV_NAMES",
    "vgg16_features",
]

# (output channels, convolutions) of VGG16's five blocks
_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def _conv_names() -> dict[str, tuple[int, int]]:
    """Keras name -> (full-size output channels, index in ``vgg16().features``), in order."""
    layout, index = {}, 0
    for b, (channels, n) in enumerate(_BLOCKS, start=1):
        for i in range(1, n + 1):
            layout[f"block{b}_conv{i}"] = (channels, index)
            index += 2  # the convolution and its ReLU
        index += 1  # the block's max-pool
    return layout


_LAYOUT = _conv_names()

CONV_NAMES: tuple[str, ...] = tuple(_LAYOUT)
"""The thirteen convolutions' Keras names, in network order."""

CONV_CHANNELS: dict[str, int] = {name: channels for name, (channels, _) in _LAYOUT.items()}
"""Each convolution's output channels in the full-size network."""

CONV_INDEX: dict[str, int] = {name: index for name, (_, index) in _LAYOUT.items()}
"""Each convolution's index in ``vgg16().features`` (the ReLUs and pools sit in between)."""

TRUNK_CONV_NAMES: tuple[str, ...] = CONV_NAMES[: CONV_NAMES.index("block4_conv3") + 1]
"""The generator's trunk: VGG16 up to and including ``block4_conv3`` (ten convolutions)."""

TRUNK_CONV_INDICES: tuple[int, ...] = tuple(CONV_INDEX[name] for name in TRUNK_CONV_NAMES)
"""The index each trunk convolution has in torchvision's ``features`` (and in the trunk)."""


def vgg16_features(
    last: str = "block5_pool", channels: Callable[[int], int] | None = None
) -> nn.Sequential:
    """``vgg16().features`` in torchvision's layout, up to and including ``last``.

    Parameters
    ----------
    last : str
        A convolution's name (the sequence then ends with its ReLU) or ``"block5_pool"`` (the
        whole of ``features``).
    channels : callable, optional
        Maps a full-size channel count to the one to build (a width multiplier); by default
        the full-size network.
    """
    if last != "block5_pool" and last not in _LAYOUT:
        raise ValueError(
            f"unknown VGG16 layer {last!r}; use one of {', '.join(CONV_NAMES)} or block5_pool"
        )
    scale = channels if channels is not None else (lambda n: n)
    layers: list[nn.Module] = []
    in_channels = 3
    for b, (full, n) in enumerate(_BLOCKS, start=1):
        for i in range(1, n + 1):
            out = scale(full)
            layers += [nn.Conv2d(in_channels, out, 3, padding=1), nn.ReLU(inplace=True)]
            in_channels = out
            if f"block{b}_conv{i}" == last:
                return nn.Sequential(*layers)
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)

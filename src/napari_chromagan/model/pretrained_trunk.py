"""The generator's trunk initialised from ImageNet classifiers (in place; training's start).

:func:`load_vgg16_trunk` takes a torchvision-layout VGG16 state dict (through
:func:`vgg16_to_trunk_state_dict`), :func:`load_efficientnet_trunk` an EfficientNet-Lite
classifier's; both check every shape before anything is copied. Re-exported by
:mod:`napari_chromagan.model.generator`, where the generator is defined.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from napari_chromagan.model import vgg16

if TYPE_CHECKING:
    from napari_chromagan.model.generator import Generator

__all__ = ["load_efficientnet_trunk", "load_vgg16_trunk", "vgg16_to_trunk_state_dict"]


def load_efficientnet_trunk(generator: Generator, state: Mapping[str, torch.Tensor]) -> None:
    """Initialise an EfficientNet-family generator from an ImageNet classifier's state dict (in place).

    The convolutional part goes into the trunk and the classifier (``_fc``) into the class head.
    Every tensor of the trunk must be in ``state`` with its shape, or ``ValueError`` names the first
    that is not.
    """
    if generator.config.trunk == "vgg16":
        raise ValueError(
            "load_efficientnet_trunk needs an EfficientNet-family generator; this one has a VGG16 trunk"
        )
    own = generator.trunk.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ValueError(
                f"{key} is missing: not an EfficientNet state dict of {generator.config.trunk}"
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{key} has shape {tuple(state[key].shape)} but {generator.config.trunk} needs "
                f"{tuple(value.shape)}"
            )
    generator.trunk.load_state_dict({k: state[k] for k in own})
    head = generator.class_head[0]
    if "_fc.weight" in state and tuple(state["_fc.weight"].shape) == tuple(head.weight.shape):
        with torch.no_grad():
            head.weight.copy_(state["_fc.weight"])
            head.bias.copy_(state["_fc.bias"])


def vgg16_to_trunk_state_dict(
    vgg_state: Mapping[str, torch.Tensor], prefix: str = "features."
) -> dict[str, torch.Tensor]:
    """Map a torchvision-layout VGG16 state dict onto :attr:`Generator.trunk`.

    torchvision's ``vgg16().features`` and the trunk share their module indices, so
    ``features.0.weight`` ... ``features.21.bias`` become ``0.weight`` ... ``21.bias``; the
    block5 convolutions and the classifier are ignored. Raises ``KeyError`` naming the first
    missing key.
    """
    mapped = {}
    for index in vgg16.TRUNK_CONV_INDICES:
        for name in ("weight", "bias"):
            key = f"{prefix}{index}.{name}"
            if key not in vgg_state:
                raise KeyError(f"{key} is missing: not a torchvision-layout VGG16 state dict")
            mapped[f"{index}.{name}"] = vgg_state[key]
    return mapped


def load_vgg16_trunk(generator: Generator, vgg_state: Mapping[str, torch.Tensor]) -> None:
    """Initialise the generator's trunk from a torchvision-layout VGG16 state dict (in place).

    Only a full-width generator can take ImageNet VGG16 weights; the shapes are checked first
    and a mismatch raises ``ValueError`` naming the layer.
    """
    mapped = vgg16_to_trunk_state_dict(vgg_state)
    own = generator.trunk.state_dict()
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"VGG16 tensor features.{key} has shape {tuple(value.shape)} but the trunk needs "
                f"{tuple(own[key].shape)} (ImageNet VGG16 weights fit only width=1.0)"
            )
    generator.trunk.load_state_dict(mapped)

"""TensorFlow's "SAME" padding for PyTorch convolutions, the one definition every network here uses.

TensorFlow pads a convolution so that it gives ceil(size / stride) outputs, and puts the odd
pixel of an uneven total after the input: a 3x3 stride-2 convolution on an even input pads 0
before and 1 after. PyTorch's symmetric ``padding=1`` would shift every output by one pixel
against weights trained in TensorFlow or Keras: the authors' generator and critic (their global
trunk and PatchGAN critic use stride 2) and the EfficientNet-Lite ImageNet files (stem and the
stride-2 depthwise convolutions).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SameConv2d", "same_pads"]


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one axis of ``size`` pixels."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A Conv2d with TensorFlow's SAME padding, worked out from each input's size.

    Symmetric cases use the convolution's own padding (no extra copy); asymmetric ones pad
    first. ``groups`` and ``bias`` are Conv2d's (the EfficientNet files have no biases: their
    BatchNorms, once folded for inference, give the convolutions one).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = same_pads(x.shape[-2], kh, sh)
        left, right = same_pads(x.shape[-1], kw, sw)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)

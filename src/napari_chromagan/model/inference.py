"""The generator as the engine runs it: BatchNorm folded into the convolutions, weights pre-cast.

Two rewrites of a generator in eval mode that change no result beyond rounding:

* **Folding.** In eval mode a BatchNorm that directly follows a convolution is a per-channel
  affine map, which folds into that convolution's weight and bias
  (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`); the BatchNorm becomes an identity. This
  applies to all 49 BatchNorms of an EfficientNet-Lite0 trunk. The paper's own BatchNorms (global
  trunk, mid-level stage) follow a ReLU and stay.
* **Pre-casting.** Under bf16 autocast every convolution and linear layer casts its float32
  weight to bf16 on every call: a copy of every weight per forward. Holding those weights in
  bf16 gives the same arithmetic without the copies (bit-identical outputs; BatchNorms and
  everything else keep float32, as autocast runs them).

Measured on this project's 2-core CPU (``bench/bench_inference_network.py``, 2026-12-03, JSON
in ``bench/results/``), one plane under bf16 autocast: the then default (EfficientNet-Lite0
family at 128) 66 -> 103 forwards a second (1.55x), the same family at 224 56 -> 74 (1.32x);
in float32, 1.16x and 1.13x (folding alone). The largest a*b* change is 1.1 Lab units under bf16
(its own rounding step near mid-gray) and 0.00 in float32.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from napari_chromagan.model.efficientnet import EfficientNetLite
from napari_chromagan.model.generator import Generator

__all__ = ["fold_batchnorm", "inference_network"]


def fold_batchnorm(generator: Generator) -> int:
    """Fold every BatchNorm that directly follows a convolution into it, in place; returns how
    many were folded. ``generator`` must be in eval mode (the running statistics are used)."""
    if generator.training:
        raise ValueError("fold BatchNorm only in eval mode: call generator.eval() first")
    trunk = generator.trunk
    if not isinstance(trunk, EfficientNetLite):
        return 0
    folded = 0
    for module, conv_name, bn_name in list(trunk.conv_bn_pairs()):
        bn = getattr(module, bn_name)
        if isinstance(bn, nn.Identity):
            continue
        setattr(module, conv_name, fuse_conv_bn_eval(getattr(module, conv_name), bn))
        setattr(module, bn_name, nn.Identity())
        folded += 1
    return folded


def _cast_weights(generator: Generator, dtype: torch.dtype) -> None:
    for module in generator.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.to(dtype)


def inference_network(generator: Generator, autocast_dtype: torch.dtype | None) -> Generator:
    """The network to run in place of ``generator`` (eval mode) under ``autocast_dtype``
    autocast (None: no autocast).

    A copy with its BatchNorms folded and, under autocast, its convolution and linear weights
    held in ``autocast_dtype``; ``generator`` itself when there is nothing to rewrite (the VGG16
    family in float32). ``generator`` is never modified. The copy is for inference only: its
    state dict has no BatchNorm entries for the folded layers, and with pre-cast weights it runs
    only under autocast.
    """
    foldable = isinstance(generator.trunk, EfficientNetLite)
    if not foldable and autocast_dtype is None:
        return generator
    network = copy.deepcopy(generator).eval()
    fold_batchnorm(network)
    if autocast_dtype is not None:
        _cast_weights(network, autocast_dtype)
    return network

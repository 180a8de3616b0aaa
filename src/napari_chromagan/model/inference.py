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


def _unfolded(generator: Generator) -> list[tuple[nn.Module, str, str]]:
    """The (module, convolution, BatchNorm) names of the BatchNorms not folded yet."""
    trunk = generator.trunk
    if not isinstance(trunk, EfficientNetLite):
        return []
    return [
        (module, conv, bn)
        for module, conv, bn in trunk.conv_bn_pairs()
        if not isinstance(getattr(module, bn), nn.Identity)
    ]


def _weighted(generator: Generator) -> list[nn.Module]:
    """The convolution and linear layers, whose weights autocast casts."""
    return [m for m in generator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def fold_batchnorm(generator: Generator) -> int:
    """Fold every BatchNorm that directly follows a convolution into it, in place; returns how
    many were folded. ``generator`` must be in eval mode (the running statistics are used)."""
    if generator.training:
        raise ValueError("fold BatchNorm only in eval mode: call generator.eval() first")
    pairs = _unfolded(generator)
    for module, conv_name, bn_name in pairs:
        bn = getattr(module, bn_name)
        setattr(module, conv_name, fuse_conv_bn_eval(getattr(module, conv_name), bn))
        setattr(module, bn_name, nn.Identity())
    return len(pairs)


def inference_network(generator: Generator, autocast_dtype: torch.dtype | None) -> Generator:
    """The network to run in place of ``generator`` (eval mode) under ``autocast_dtype``
    autocast (None: no autocast).

    A copy with its BatchNorms folded and its convolution and linear weights held in
    ``autocast_dtype`` (float32 without autocast: a network already rewritten for bf16, such
    as another colourizer's, is cast back); ``generator`` itself when there is nothing to
    rewrite (the VGG16 family in float32). ``generator`` is never modified. The copy is for
    inference only: its state dict has no BatchNorm entries for the folded layers, and with
    pre-cast weights it runs only under autocast.
    """
    dtype = autocast_dtype or torch.float32
    if not _unfolded(generator) and all(m.weight.dtype == dtype for m in _weighted(generator)):
        return generator
    network = copy.deepcopy(generator).eval()
    fold_batchnorm(network)
    for module in _weighted(network):
        module.to(dtype)
    return network

"""Reading a plain PyTorch state dict (a ``.pth`` of tensors), never running code from it.

The project's own checkpoints have their own reader (:mod:`napari_chromagan.weights.checkpoint`);
this one is for the third-party files the model and training start from: the EfficientNet-Lite
ImageNet weights and a torchvision-layout VGG16.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from napari_chromagan.errors import CheckpointError

__all__ = ["read_state_dict"]


def read_state_dict(path: str | os.PathLike[str], kind: str = "weights") -> Mapping[str, object]:
    """What ``torch.load(weights_only=True)`` finds in ``path``, unwrapped from a
    ``{"state_dict": ...}`` envelope; :class:`CheckpointError` when it is not a readable state dict.
    ``kind`` names the file in the error for a missing one (``"EfficientNet-Lite weights"``)."""
    import torch  # here, not at the top: importing this module stays torch-free

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{kind} file {path} does not exist or is not a file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusals, corrupt zips, foreign formats
        raise CheckpointError(
            f"{path} is not a readable PyTorch state dict: {str(exc).splitlines()[0]}"
        ) from None
    if (
        isinstance(state, Mapping)
        and "state_dict" in state
        and isinstance(state["state_dict"], Mapping)
    ):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state

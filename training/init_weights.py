"""Where a run's starting weights come from: a pretrained trunk (``--init-vgg16``,
``--init-trunk``) or a whole generator and critic to fine-tune (``--init-from``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from torch import nn

from napari_chromagan.model.generator import Generator
from napari_chromagan.weights.checkpoint import load_checkpoint

from .config import ConfigError, TrainConfig

__all__ = ["init_from_checkpoint", "init_trunk", "init_weights_path"]

log = logging.getLogger("training")


def init_weights_path(value: str) -> Path:
    """The file ``--init-from`` names: a path, ``default`` (what ``napari-chromagan colorize``
    uses without ``--weights``) or a name of :data:`napari_chromagan.weights.registry.REGISTRY`.

    Raises
    ------
    WeightsNotFoundError
        A path that is not a file, a registry entry not on this machine, or no default weights.
    """
    from napari_chromagan.errors import WeightsNotFoundError
    from napari_chromagan.weights import registry
    from napari_chromagan.weights.lookup import resolve_weights

    if value == "default":
        return resolve_weights(None)
    if value in registry.REGISTRY and not Path(value).exists():
        path = registry.entry_path(value)
        if path is None:
            raise WeightsNotFoundError(
                f"--init-from {value}: these weights are not on this machine yet; get them with "
                f"`napari-chromagan download-weights {value}` (or give a checkpoint file)"
            )
        return path
    return resolve_weights(value)


def init_trunk(generator: Generator, config: TrainConfig, resuming: bool) -> None:
    """Pretrained weights for the trunk, when the config asks for them (a resume loads its own)."""
    if config.init_from:  # the whole generator comes from there
        return
    if config.trunk != "vgg16":
        if resuming:
            return
        if config.init_trunk == "none":
            log.warning("--init-trunk none: the %s trunk starts from random weights", config.trunk)
            return
        from .teacher import init_trunk_from_efficientnet

        init_trunk_from_efficientnet(generator, config.init_trunk)
        log.info(
            "trunk and class head initialised from ImageNet %s%s",
            config.trunk,
            f" ({config.init_trunk})" if config.init_trunk else "",
        )
    elif config.init_vgg16 and not resuming:  # the checkpoint holds the trained trunk
        from .teacher import init_trunk_from_vgg16

        init_trunk_from_vgg16(generator, config.init_vgg16)
        log.info("trunk initialised from %s", config.init_vgg16)
    elif not resuming:
        log.warning("no --init-vgg16: the VGG16 trunk starts from random weights (slower to train)")


def init_from_checkpoint(
    generator: Generator, critic: nn.Module | None, value: str
) -> dict[str, Any]:
    """Load the generator (and the critic, when the file has a fitting one) from ``--init-from``;
    returns what the run was fine-tuned from (the ``fine_tuned_from`` of its checkpoints).

    The optimizers, the step and the data order start afresh: this is a new run.
    """
    path = init_weights_path(value)
    ckpt = load_checkpoint(path)
    wanted = generator.config
    same_size = dataclasses.replace(ckpt.config, image_size=wanted.image_size)
    if ckpt.config != wanted and not (ckpt.config.any_size and same_size == wanted):
        raise ConfigError(
            f"--init-from {path}: its generator is {ckpt.config}, but this run builds {wanted}; the "
            "model's --width and --trunk come from the file, and --image-size too unless the "
            "family fits any size (the EfficientNet-Lite trunks): drop those flags"
        )
    generator.load_state_dict(ckpt.generator.state_dict())
    critic_note = _load_critic(critic, (ckpt.training or {}).get("critic"))
    metadata = ckpt.metadata
    log.info("fine-tuning %s (%s), with %s", path, ckpt.config, critic_note)
    return {
        "weights": str(path),
        "variant": metadata.get("variant"),
        "steps": metadata.get("steps"),
        "label": metadata.get("label"),
        "class_head_trained": metadata.get("class_head_trained"),
    }


def _load_critic(critic: nn.Module | None, critic_state: dict[str, Any] | None) -> str:
    """Load the file's critic into ``critic`` where it fits; returns what the run starts with."""
    if critic is None:
        return "no critic (this preset has none)"
    if critic_state is None:
        return "a fresh critic (the file has none)"
    try:
        critic.load_state_dict(critic_state)
    except RuntimeError as exc:  # another critic width
        return "a fresh critic (the file's does not fit: " + str(exc).splitlines()[0] + ")"
    return "its critic"

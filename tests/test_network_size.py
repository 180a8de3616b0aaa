"""The network size: EfficientNet-family weights run at any multiple of 32 (Generator.at_size,
Colorizer(network_size=), ``colorize --network-size``, ``evaluate --network-size``)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from conftest import TINY, make_generator
from PIL import Image

from napari_chromagan.argtypes import size_multiple_of_32
from napari_chromagan.cli import main
from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.files.provenance import read_provenance
from napari_chromagan.model.generator import Generator, ModelConfig
from napari_chromagan.weights.checkpoint import load_checkpoint, save_checkpoint
from training.evaluate import evaluate

LITE = ModelConfig(width=0.125, image_size=64, trunk="efficientnet-lite0")


@pytest.fixture(scope="module")
def lite() -> Generator:
    return make_generator(LITE, seed=3)


def _built_at(generator: Generator, size: int) -> Generator:
    """The same weights in a generator built for ``size`` from scratch: what at_size must equal."""
    other = Generator(ModelConfig(**{**generator.config.to_dict(), "image_size": size}))
    other.load_state_dict(generator.state_dict())
    return other.eval()


def _gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    return np.clip(
        120 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0) + rng.normal(0, 10, (h, w)), 0, 255
    ).astype(np.uint8)


def test_at_size_is_the_same_network_built_for_that_size(lite):
    assert lite.at_size(64) is lite
    big = lite.at_size(96)
    assert big.config == ModelConfig(width=0.125, image_size=96, trunk="efficientnet-lite0")
    assert lite.config.image_size == 64  # the original is untouched
    L = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        ab, probs = big(L)
        ab_ref, probs_ref = _built_at(lite, 96)(L)
    assert ab.shape == (2, 2, 96, 96) and probs.shape == (2, 1000)
    assert torch.equal(ab, ab_ref) and torch.equal(probs, probs_ref)
    with pytest.raises(ValueError, match=r"\(N, 1, 64, 64\)"):
        lite(L)
    # a copy: training the resized network leaves the original's weights alone
    with torch.no_grad():
        next(big.parameters()).add_(1.0)
    assert not torch.equal(next(big.parameters()), next(lite.parameters()))


def test_at_size_refuses_the_vgg16_family_and_sizes_off_the_grid(lite):
    vgg = make_generator(TINY)
    assert vgg.at_size(64) is vgg
    with pytest.raises(ValueError, match=r"fit 64 px only.*own size \(64, the default"):
        vgg.at_size(96)
    with pytest.raises(ValueError, match="multiple of 32"):
        lite.at_size(80)


def test_colorizer_runs_the_network_at_the_asked_size(lite):
    gray = _gray(50, 70)
    at96 = Colorizer(lite, "cpu", precision="fp32", network_size=96)
    assert at96.config.image_size == 96 and lite.config.image_size == 64
    result = at96.colorize(gray)
    reference = Colorizer(_built_at(lite, 96), "cpu", precision="fp32").colorize(gray)
    own = Colorizer(lite, "cpu", precision="fp32").colorize(gray)
    assert result.rgb.shape == (50, 70, 3)  # full resolution, whatever the network size
    assert np.array_equal(result.rgb, reference.rgb)
    np.testing.assert_array_equal(result.class_probs, reference.class_probs)
    assert np.abs(result.ab - own.ab).max() > 0.1  # it did run at another size
    with pytest.raises(ValueError, match="fit 64 px only"):
        Colorizer(make_generator(TINY), "cpu", network_size=96)


def test_the_argument_type_says_what_to_pass():
    assert size_multiple_of_32("192") == 192
    with pytest.raises(argparse.ArgumentTypeError, match="multiple of 32.*try 192 or 224"):
        size_multiple_of_32("200")
    with pytest.raises(argparse.ArgumentTypeError, match="at least 32"):
        size_multiple_of_32("16")
    with pytest.raises(argparse.ArgumentTypeError, match="whole number"):
        size_multiple_of_32("big")


def test_cli_colorize_network_size_is_used_and_recorded(tmp_path, capsys, lite):
    weights = tmp_path / "lite.pt"
    save_checkpoint(weights, lite, {"variant": "test"})
    Image.fromarray(_gray(50, 70)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["colorize", str(tmp_path / "a.png"), "-o", str(out), "--weights", str(weights)]
    code = main([*args, "--device", "cpu", "--network-size", "96", "--precision", "fp32"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "(network at 96 px)" in err
    written = np.asarray(Image.open(out / "a_colorized.png"))
    expected = Colorizer(lite, "cpu", precision="fp32", network_size=96).colorize(_gray(50, 70))
    assert np.array_equal(written, expected.rgb)
    assert read_provenance(out / "a_colorized.png")["network_size"] == 96


def test_cli_colorize_refuses_a_size_the_weights_cannot_run_at(tmp_path, capsys):
    weights = tmp_path / "vgg.pt"
    save_checkpoint(weights, make_generator(TINY), {"variant": "test"})
    Image.fromarray(_gray(40, 40)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["colorize", str(tmp_path / "a.png"), "-o", str(out), "--weights", str(weights)]
    assert main([*args, "--device", "cpu", "--network-size", "96"]) == 2
    assert "fit 64 px only" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    assert main([*args, "--network-size", "100"]) == 2  # a usage error, before any work
    assert "--network-size: must be a multiple of 32" in capsys.readouterr().err


def test_evaluate_at_another_network_size(tmp_path, lite):
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    weights = tmp_path / "lite.pt"
    save_checkpoint(weights, lite, {"variant": "test"})
    own = evaluate(weights, tmp_path, device="cpu", size=64, progress=False)
    at96 = evaluate(weights, tmp_path, device="cpu", size=64, network_size=96, progress=False)
    assert (own["network_size"], at96["network_size"]) == (64, 96)
    assert at96["image_size"] == 64
    assert at96["metrics"]["psnr_64"]["floor"] == pytest.approx(own["metrics"]["psnr_64"]["floor"])
    assert at96["metrics"]["psnr_64"]["model"] != own["metrics"]["psnr_64"]["model"]
    ready = Colorizer(lite, "cpu", precision="fp32")
    with pytest.raises(ValueError, match="build the Colorizer with network_size=96"):
        evaluate(ready, tmp_path, network_size=96, progress=False)


def test_export_makes_another_size_the_files_own(tmp_path, capsys, lite):
    from training.__main__ import main as training_main

    source = save_checkpoint(tmp_path / "lite.pt", lite, {"variant": "test"})
    out = tmp_path / "at96.pt"
    assert training_main(["export", str(source), "-o", str(out), "--network-size", "96"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.config.image_size == 96 and ckpt.metadata["trained_image_size"] == 64
    gray = _gray(50, 70)
    expected = Colorizer(lite, "cpu", precision="fp32", network_size=96).colorize(gray)
    got = Colorizer.from_checkpoint(out, "cpu", precision="fp32").colorize(gray)
    assert np.array_equal(got.rgb, expected.rgb)
    # re-exported at its training size, the first size is still the one it was trained at
    back = tmp_path / "at64.pt"
    assert training_main(["export", str(out), "-o", str(back), "--network-size", "64"]) == 0
    assert load_checkpoint(back).config.image_size == 64
    vgg = save_checkpoint(tmp_path / "vgg.pt", make_generator(TINY), {})
    assert (
        training_main(["export", str(vgg), "-o", str(tmp_path / "x.pt"), "--network-size", "96"])
        == 2
    )
    assert "fit 64 px only" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()

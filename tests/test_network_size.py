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
    with torch.no_grad():  # the family takes any multiple of 32: S is only its default
        assert torch.equal(lite(L)[0], ab)
    with pytest.raises(ValueError, match=r"\(N, 1, h, w\) with h and w multiples of 32"):
        lite(torch.rand(1, 1, 96, 80))
    with pytest.raises(ValueError, match=r"\(N, 1, 64, 64\)"):
        make_generator(TINY)(L)
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
    assert "(network size 96)" in err
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


def test_network_shape_keeps_the_aspect_ratio_at_the_same_area():
    assert LITE.network_shape(50, 50) == (64, 64)
    assert ModelConfig(image_size=224, trunk="efficientnet-lite0").network_shape(321, 481) == (
        192,
        288,
    )  # 3:2 at about 224 x 224 pixels
    assert ModelConfig(image_size=224, trunk="efficientnet-lite0").network_shape(481, 321) == (
        288,
        192,
    )
    assert LITE.network_shape(10, 10_000) == (32, 512)  # at least 32, at most 8 S
    assert TINY.network_shape(321, 481) == (64, 64)  # the VGG16 family: squashed, as the authors


def test_a_wide_plane_runs_the_network_at_its_aspect_ratio(lite):
    gray = _gray(40, 90)
    engine = Colorizer(lite, "cpu", precision="fp32")
    seen = []
    real = engine.predict

    def predict(L, with_class=True):
        seen.append(tuple(L.shape))
        return real(L, with_class=with_class)

    engine.predict = predict
    result = engine.colorize(np.stack([gray, gray[::-1]]))
    assert seen == [(2, 1, 32, 96)] and result.rgb.shape == (2, 40, 90, 3)
    # the same as running the network on the antialiased plane at that shape by hand
    L = torch.from_numpy(result.L[0])[None, None] / 100
    x = torch.nn.functional.interpolate(L, size=(32, 96), mode="bilinear", antialias=True)
    with torch.no_grad():
        ab = lite(x.clamp(0, 1))[0] * 255 - 128
    ab = torch.nn.functional.interpolate(ab, size=(40, 90), mode="bilinear", antialias=True)
    assert np.abs(result.ab[0] - ab[0].permute(1, 2, 0).numpy()).max() < 1e-3


def test_files_of_different_aspect_ratios_packed_together(tmp_path, capsys, lite, monkeypatch):
    """The file pipeline packs small files into one batch; planes of different network shapes
    then run as one network call per shape, each as if colourised alone."""
    weights = save_checkpoint(tmp_path / "lite.pt", lite, {"variant": "test"})
    images = {"wide": _gray(40, 90, 1), "tall": _gray(90, 40, 2), "wide2": _gray(40, 90, 3)}
    for name, image in images.items():
        Image.fromarray(image).save(tmp_path / f"{name}.png")
    engine = Colorizer(lite, "cpu", precision="fp32")
    alone = {name: engine.colorize(image, with_class=False).rgb for name, image in images.items()}
    calls = []
    real = Colorizer.predict

    def predict(self, L, with_class=True):  # one plane at a time: pixels independent of packing
        calls.append(tuple(L.shape))
        ab = torch.cat([real(self, L[i : i + 1], with_class=False)[0] for i in range(len(L))])
        return ab, None

    monkeypatch.setattr(Colorizer, "predict", predict)
    out = tmp_path / "out"
    inputs = [str(tmp_path / f"{name}.png") for name in images]
    args = ["colorize", *inputs, "-o", str(out), "--weights", str(weights), "--device", "cpu"]
    assert main([*args, "--precision", "fp32", "--batch-size", "8"]) == 0, capsys.readouterr().err
    assert sorted(calls) == [(1, 1, 96, 32), (2, 1, 32, 96)]  # one pack, two shapes
    for name in images:
        written = np.asarray(Image.open(out / f"{name}_colorized.png"))
        np.testing.assert_array_equal(written, alone[name], err_msg=name)


def test_exporting_an_exported_file_keeps_the_record_of_its_first_export(tmp_path, lite):
    from training.export import export

    first = export(
        save_checkpoint(tmp_path / "lite.pt", lite, {"variant": "test"}),
        tmp_path / "first.pt",
        evaluation={"images": 3},
    )
    again = load_checkpoint(export(first, tmp_path / "again.pt", network_size=96)).metadata
    assert again["exported_from"] == "first.pt" and "evaluation" not in again
    assert again["previous_export"]["exported_from"] == "lite.pt"
    assert again["previous_export"]["evaluation"] == {"images": 3}

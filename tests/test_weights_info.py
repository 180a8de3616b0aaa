"""``napari-chromagan info model.pt``: what a weights file records, in words and as JSON."""

from __future__ import annotations

import json

from conftest import TINY, make_generator

from napari_chromagan.cli import main
from napari_chromagan.weights.checkpoint import save_checkpoint

EVALUATION = {
    "data": "/somewhere/kodak24",
    "images": 24,
    "image_size": 224,
    "network_size": 256,
    "metrics": {
        "psnr_224": {"model": 23.25, "floor": 22.0},
        "colourfulness": {"model": 21.0, "truth": 42.0},
        "class_top1_in_teacher_top5": {"model": 0.75},
    },
}


def test_info_describes_a_trained_and_exported_file(tmp_path, capsys):
    path = tmp_path / "mine.pt"
    metadata = {
        "variant": "chromagan",
        "steps": 1200,
        "batch_size": 16,
        "images": 500,
        "class_head_trained": True,
        "ema_decay": 0.999,
        "label": "my tissue model",
        "evaluation": EVALUATION,
        "exported": "2026-12-03T18:00:00+00:00",
        "weights_dtype": "float16",
        "fine_tuned_from": {
            "weights": "/x/chromagan-lite0.pt",
            "variant": "chromagan",
            "steps": 900,
        },
    }
    generator = make_generator()
    save_checkpoint(path, generator, metadata)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    millions = sum(p.numel() for p in generator.parameters()) / 1e6
    assert f"{path}: napari-chromagan weights" in out
    assert f"{TINY.trunk} family, width {TINY.width:g}, network size {TINY.image_size}" in out
    assert f"{millions:.1f} M parameters" in out
    assert "class head: trained" in out and "label: my tissue model" in out
    assert (
        "chromagan preset, 1200 steps, batch 16, on 500 images; weights averaged (decay 0.999)"
        in out
    )
    assert "fine-tuned from: chromagan-lite0.pt (chromagan, 900 steps)" in out
    # the evaluation line is computed from the recorded numbers
    assert "kodak24 (24 images, network size 256), PSNR at 224 23.25 dB (+1.25 over gray)" in out
    assert "colourfulness 50 % of the truth's, class top-1 in the teacher's top 5 on 75 %" in out
    assert "exported: 2026-12-03T18:00:00+00:00, float16 weights" in out


def test_info_on_a_bare_file_says_what_is_not_recorded_and_json_round_trips(tmp_path, capsys):
    path = tmp_path / "bare.pt"
    save_checkpoint(path, make_generator(), {}, {"step": 7})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "class head: not recorded" in out and "training state: step 7 (resumable)" in out
    assert "training:" not in out and "evaluation:" not in out
    assert main(["info", "--json", str(path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["file"] == str(path) and record["weights"]["config"]["width"] == TINY.width


def test_info_reports_an_unreadable_weights_file_and_goes_on(tmp_path, capsys):
    junk, good = tmp_path / "junk.pt", tmp_path / "good.pt"
    junk.write_bytes(b"not a checkpoint")
    save_checkpoint(good, make_generator(), {"class_head_trained": False})
    assert main(["info", str(junk), str(good)]) == 2
    captured = capsys.readouterr()
    assert str(junk) in captured.err and "not a readable PyTorch file" in captured.err
    assert "class head: not trained (no class bars)" in captured.out
    assert junk.read_bytes() == b"not a checkpoint"

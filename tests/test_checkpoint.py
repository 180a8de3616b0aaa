from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from napari_chromagan.errors import CheckpointError, WeightsNotFoundError
from napari_chromagan.model.generator import Generator, ModelConfig
from napari_chromagan.weights.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from napari_chromagan.weights.lookup import cached_weights, resolve_weights, user_weights_dir


def test_round_trip_gives_bit_identical_outputs(tmp_path, tiny_generator):
    path = save_checkpoint(
        tmp_path / "w.pt", tiny_generator, {"class_head_trained": False, "variant": "test"}
    )
    ckpt = load_checkpoint(path)
    assert ckpt.config == tiny_generator.config
    assert ckpt.metadata == {"class_head_trained": False, "variant": "test"}
    assert ckpt.class_head_trained is False
    assert not ckpt.generator.training
    L = torch.rand(2, 1, 64, 64)
    with torch.inference_mode():
        a1, p1 = tiny_generator(L)
        a2, p2 = ckpt.generator(L)
    assert torch.equal(a1, a2) and torch.equal(p1, p2)
    # no temporary file is left behind
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]
    # readable like any file the user creates (mkstemp alone would make it private)
    plain = tmp_path / "plain"
    plain.touch()
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    plain.unlink()


def test_half_checkpoint_is_smaller_and_close(tmp_path, tiny_generator):
    full = save_checkpoint(tmp_path / "f.pt", tiny_generator)
    half = save_checkpoint(tmp_path / "h.pt", tiny_generator, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    g = load_checkpoint(half).generator
    assert g.trunk[0].weight.dtype == torch.float32
    L = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(g(L)[0], tiny_generator(L)[0], atol=2e-3, rtol=0)


def test_save_failure_leaves_previous_file_intact(tmp_path, tiny_generator, monkeypatch):
    path = save_checkpoint(tmp_path / "w.pt", tiny_generator)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, tiny_generator)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]


def test_truncated_file_is_refused(tmp_path, tiny_generator):
    path = save_checkpoint(tmp_path / "w.pt", tiny_generator)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_empty_and_missing_files_are_refused(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_non_torch_file_is_refused(tmp_path):
    path = tmp_path / "photo.pt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(CheckpointError, match="not a readable PyTorch file"):
        load_checkpoint(path)


def test_foreign_torch_file_is_refused(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError, match="not a napari-chromagan checkpoint.*VGG16"):
        load_checkpoint(path)


def test_wrong_architecture_is_refused(tmp_path, tiny_generator):
    path = save_checkpoint(tmp_path / "w.pt", tiny_generator)
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["width"] = 0.25  # claims another width than its weights have
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError, match=r"do not fit the architecture.*shape mismatches: trunk\.0\.weight"
    ):
        load_checkpoint(path)
    payload["model_config"]["width"] = 0.125
    del payload["generator"]["decoder.0.weight"]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"missing: decoder\.0\.weight"):
        load_checkpoint(path)


def test_newer_format_version_is_refused(tmp_path, tiny_generator):
    path = save_checkpoint(tmp_path / "w.pt", tiny_generator)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 99.*Upgrade"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this object would create a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_payload_is_refused_without_running(tmp_path, tiny_generator):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save(
        {
            "format": FORMAT,
            "format_version": 1,
            "model_config": tiny_generator.config.to_dict(),
            "generator": tiny_generator.state_dict(),
            "metadata": {"x": _Payload(marker)},
        },
        path,
    )
    # sanity: a plain unpickler would run it
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("data.pkl"))
        assert b"touch" in z.read(name)
    with pytest.raises(CheckpointError, match="refused unopened"):
        load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_full_size_generator_round_trip(tmp_path):
    torch.manual_seed(0)
    g = Generator(ModelConfig(width=0.25)).eval()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "w.pt", g))
    for (k, a), (_, b) in zip(
        g.state_dict().items(), ckpt.generator.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k


def test_resolve_weights_order(tmp_path, monkeypatch, tiny_generator):
    with pytest.raises(WeightsNotFoundError, match="import-weights.*python -m training"):
        resolve_weights()
    # the shipped demo model is the last resort
    demo = save_checkpoint(tmp_path / "_weights" / "chromagan-lite0.pt", tiny_generator)
    monkeypatch.setattr("napari_chromagan.weights.lookup.PACKAGED_WEIGHTS", demo)
    assert resolve_weights() == demo
    cache = user_weights_dir()
    cache.mkdir(parents=True)
    other = save_checkpoint(cache / "mine.pt", tiny_generator)
    assert resolve_weights() == other
    imported = save_checkpoint(cache / "chromagan-imagenet.pt", tiny_generator)
    assert cached_weights() == [imported, other]
    env = save_checkpoint(tmp_path / "env.pt", tiny_generator)
    monkeypatch.setenv("NAPARI_CHROMAGAN_WEIGHTS", str(env))
    assert resolve_weights() == env
    explicit = save_checkpoint(tmp_path / "explicit.pt", tiny_generator)
    assert resolve_weights(explicit) == explicit
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights(tmp_path / "missing.pt")
    monkeypatch.setenv("NAPARI_CHROMAGAN_WEIGHTS", str(tmp_path / "gone.pt"))
    with pytest.raises(WeightsNotFoundError, match="NAPARI_CHROMAGAN_WEIGHTS points to"):
        resolve_weights()

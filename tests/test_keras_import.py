"""Importing the authors' Keras .h5 weights (docs/model.md, "The authors' Keras weights").

Files are synthetic: the authors' layout written with h5py from random arrays, for a reduced
architecture (width 0.125, 64x64) so that every file is small. Nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")

from napari_chromagan.cli import main  # noqa: E402
from napari_chromagan.errors import CheckpointError  # noqa: E402
from napari_chromagan.model.generator import ModelConfig  # noqa: E402
from napari_chromagan.weights.checkpoint import load_checkpoint  # noqa: E402
from napari_chromagan.weights.keras_import import (  # noqa: E402
    CHECKPOINT_NAME,
    import_keras_weights,
    import_keras_weights_to_checkpoint,
    keras_weight_shapes,
)
from napari_chromagan.weights.lookup import resolve_weights, user_weights_dir  # noqa: E402

SMALL = ModelConfig(width=0.125, image_size=64)

# `layer_names` of the authors' model, in the order of spec §1.1.
LAYER_NAMES = (
    "input_1, model_2, conv2d_6, batch_normalization_1, conv2d_7, batch_normalization_2, conv2d_8, "
    "batch_normalization_3, conv2d_9, batch_normalization_4, flatten_1, dense_1, conv2d_10, dense_2, "
    "batch_normalization_5, dense_3, conv2d_11, repeat_vector_1, batch_normalization_6, reshape_1, "
    "concatenate_2, conv2d_12, conv2d_13, up_sampling2d_1, conv2d_14, conv2d_15, up_sampling2d_2, "
    "flatten_2, conv2d_16, dense_4, conv2d_17, dense_5, up_sampling2d_3, dense_6"
).split(", ")
BN_ORDER = ("gamma", "beta", "moving_mean", "moving_variance")

# The authors' generator as the paper's architecture table (and docs/model.md, "The generator")
# describes it, written out here and not taken from keras_import: (Keras layer name, kind,
# kernel side, input and output channels) at the paper's size. Counts that a narrower network
# scales are numbers; the three input channels, the two a*b* outputs, the 1000 classes and the
# flatten of the global trunk's 7x7x512 output (NHWC, 25,088 values) are named.
RGB, AB, CLASSES, FLAT = "rgb", "ab", "classes", "flat"
PAPER_LAYERS = (
    # VGG16 up to block4_conv3, nested in the file's model_2 group
    ("block1_conv1", "conv", 3, RGB, 64),
    ("block1_conv2", "conv", 3, 64, 64),
    ("block2_conv1", "conv", 3, 64, 128),
    ("block2_conv2", "conv", 3, 128, 128),
    ("block3_conv1", "conv", 3, 128, 256),
    ("block3_conv2", "conv", 3, 256, 256),
    ("block3_conv3", "conv", 3, 256, 256),
    ("block4_conv1", "conv", 3, 256, 512),
    ("block4_conv2", "conv", 3, 512, 512),
    ("block4_conv3", "conv", 3, 512, 512),
    # global-feature trunk: conv (strides 2, 1, 2, 1), ReLU, BatchNorm
    ("conv2d_6", "conv", 3, 512, 512),
    ("batch_normalization_1", "bn", None, 512, 512),
    ("conv2d_7", "conv", 3, 512, 512),
    ("batch_normalization_2", "bn", None, 512, 512),
    ("conv2d_8", "conv", 3, 512, 512),
    ("batch_normalization_3", "bn", None, 512, 512),
    ("conv2d_9", "conv", 3, 512, 512),
    ("batch_normalization_4", "bn", None, 512, 512),
    # global branch to the fusion, and the class branch
    ("dense_1", "dense", None, FLAT, 1024),
    ("dense_2", "dense", None, 1024, 512),
    ("dense_3", "dense", None, 512, 256),
    ("dense_4", "dense", None, FLAT, 4096),
    ("dense_5", "dense", None, 4096, 4096),
    ("dense_6", "dense", None, 4096, CLASSES),
    # mid-level branch
    ("conv2d_10", "conv", 3, 512, 512),
    ("batch_normalization_5", "bn", None, 512, 512),
    ("conv2d_11", "conv", 3, 512, 256),
    ("batch_normalization_6", "bn", None, 256, 256),
    # fusion (mid 256 + global 256) and decoder
    ("conv2d_12", "conv", 1, 512, 256),
    ("conv2d_13", "conv", 3, 256, 128),
    ("conv2d_14", "conv", 3, 128, 64),
    ("conv2d_15", "conv", 3, 64, 64),
    ("conv2d_16", "conv", 3, 64, 32),
    ("conv2d_17", "conv", 3, 32, AB),
)


def paper_shapes(width: float = 1.0, size: int = 224) -> dict[str, dict[str, tuple[int, ...]]]:
    """The Keras array shapes of PAPER_LAYERS for a network ``width`` times as wide on ``size``
    px input: every numbered channel count times ``width``, the named ones as they are (the
    flatten is (size / 32)^2 times the trunk's 512 channels scaled)."""

    def n(count: int | str) -> int:
        named = {RGB: 3, AB: 2, CLASSES: 1000, FLAT: (size // 32) ** 2 * round(512 * width)}
        return named[count] if isinstance(count, str) else round(count * width)

    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, kind, k, cin, cout in PAPER_LAYERS:
        if kind == "conv":
            shapes[name] = {"kernel": (k, k, n(cin), n(cout)), "bias": (n(cout),)}
        elif kind == "dense":
            shapes[name] = {"kernel": (n(cin), n(cout)), "bias": (n(cout),)}
        else:
            shapes[name] = {w: (n(cout),) for w in BN_ORDER}
    return shapes


def random_arrays(config: ModelConfig = SMALL, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Random float32 arrays with the shapes of PAPER_LAYERS at ``config``'s width and size,
    keyed like the authors' file."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for layer, shapes in paper_shapes(config.width, config.image_size).items():
        arrays[layer] = {}
        for name, shape in shapes.items():
            if name == "kernel":
                fan_in = int(np.prod(shape[:-1]))
                value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
            elif name == "moving_variance":
                value = rng.uniform(0.5, 2.0, shape)
            elif name == "gamma":
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = rng.uniform(-0.2, 0.2, shape)
            arrays[layer][name] = value.astype(np.float32)
    return arrays


def _names(values: list[str]) -> np.ndarray:
    return (
        np.array([v.encode("utf8") for v in values], dtype="S")
        if values
        else np.array([], dtype="S1")
    )


def write_keras_h5(
    path: Path,
    arrays: Mapping[str, Mapping[str, np.ndarray | tuple[int, ...]]],
    *,
    trunk_group: str = "model_2",
    trunk_suffix: str = "",
    drop: tuple[str, ...] = (),
) -> Path:
    """Write ``arrays`` in the layout of a Keras 2.2.4 ``model.save`` (spec §5.3).

    ``trunk_group``/``trunk_suffix``: "model_2"/"" for the current code, "model_3"/"_1" for the
    original (block1_conv1_1/kernel:0). ``drop``: layer names left out of the file entirely.
    """
    layer_names = [trunk_group if n == "model_2" else n for n in LAYER_NAMES if n not in drop]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.2.4"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"name": "model_4"}})
        f.attrs["training_config"] = json.dumps({"loss": ["mse", "kld"]})
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = _names(layer_names)
        mw.attrs["keras_version"] = "2.2.4"
        mw.attrs["backend"] = "tensorflow"
        for layer in layer_names:
            g = mw.create_group(layer)
            if layer == trunk_group:
                items = [
                    (f"{block}{trunk_suffix}/{w}:0", arrays[block][w])
                    for block in arrays
                    if block.startswith("block")
                    for w in ("kernel", "bias")
                ]
            elif layer in arrays:
                order = BN_ORDER if layer.startswith("batch") else ("kernel", "bias")
                items = [(f"{layer}/{w}:0", arrays[layer][w]) for w in order]
            else:
                items = []
            g.attrs["weight_names"] = _names([n for n, _ in items])
            for name, value in items:
                if isinstance(value, tuple):  # a shape: unallocated, reads as the fill value
                    g.create_dataset(name, shape=value, dtype="f4", fillvalue=0.25)
                else:
                    g.create_dataset(name, data=value)
        opt = f.create_group("optimizer_weights")
        opt.attrs["weight_names"] = _names(["Adam/iterations:0"])
        opt.create_dataset("Adam/iterations:0", data=np.int64(10))
    return path


@pytest.fixture(scope="module")
def arrays() -> dict[str, dict[str, np.ndarray]]:
    return random_arrays()


@pytest.fixture(scope="module")
def keras_file(arrays, tmp_path_factory) -> Path:
    return write_keras_h5(tmp_path_factory.mktemp("keras") / "my_model_colorization.h5", arrays)


@pytest.fixture(scope="module")
def imported(keras_file):
    return import_keras_weights(keras_file, SMALL)


def _params(shapes: dict[str, dict[str, tuple[int, ...]]], names) -> int:
    return sum(int(np.prod(shape)) for name in names for shape in shapes[name].values())


def test_the_layer_table_written_here_has_the_papers_parameter_counts():
    # the oracle itself, against the parameter totals of the authors' published network
    shapes = paper_shapes()
    names = [row[0] for row in PAPER_LAYERS]
    assert _params(shapes, [n for n in names if n.startswith("block")]) == 7_635_264  # VGG trunk
    assert _params(shapes, ["dense_4", "dense_5", "dense_6"]) == 123_642_856  # class head
    assert _params(shapes, names) == 171_171_722  # BN moving statistics included
    assert (
        _params(shapes, [n for n in names if n not in ("dense_4", "dense_5", "dense_6")])
        == 47_528_866
    )
    assert len(names) == 10 + 12 + 6 + 6 and len(set(names)) == len(names)
    # every weighted layer of the file's layer_names, and nothing else
    assert {n for n in LAYER_NAMES if n.startswith(("conv2d", "batch_norm", "dense"))} == {
        n for n in names if not n.startswith("block")
    }


@pytest.mark.parametrize("config", [ModelConfig(), SMALL], ids=["paper", "small"])
def test_the_importers_shape_table_matches_the_paper(config):
    assert keras_weight_shapes(config) == paper_shapes(config.width, config.image_size)


def test_full_size_import_from_unallocated_file(tmp_path):
    """The paper's architecture end to end, from a ~100 kB file whose arrays read as 0.25."""
    shapes = paper_shapes()
    path = write_keras_h5(tmp_path / "full.h5", shapes, trunk_group="model_3", trunk_suffix="_1")
    assert path.stat().st_size < 1_000_000
    g = import_keras_weights(path)
    assert g.config == ModelConfig() and not g.training
    state = g.state_dict()
    assert sum(v.numel() for k, v in state.items() if "num_batches" not in k) == 171_171_722
    assert all(bool((v == 0.25).all()) for k, v in state.items() if "num_batches" not in k)


def test_both_naming_variants_give_identical_generators(arrays, imported, tmp_path):
    old = write_keras_h5(tmp_path / "old.h5", arrays, trunk_group="model_3", trunk_suffix="_1")
    other = import_keras_weights(old, SMALL)
    assert not other.training and not imported.training
    a, b = imported.state_dict(), other.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the arrays really went in
    np.testing.assert_array_equal(
        a["trunk.0.weight"].numpy(), arrays["block1_conv1"]["kernel"].transpose(3, 2, 0, 1)
    )


def test_weights_only_file_at_root(arrays, imported, tmp_path):
    full = write_keras_h5(tmp_path / "full.h5", arrays)
    root_only = tmp_path / "weights.h5"
    with h5py.File(full, "r") as src, h5py.File(root_only, "w") as dst:
        for key in src["model_weights"]:
            src.copy(src["model_weights"][key], dst, name=key)
        for key, value in src["model_weights"].attrs.items():
            dst.attrs[key] = value
    g = import_keras_weights(root_only, SMALL)
    assert all(torch.equal(v, imported.state_dict()[k]) for k, v in g.state_dict().items())


def _capture(generator, L):
    """Run the generator, capturing module inputs/outputs with forward hooks (cloned)."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    modules = {
        "conv1": generator.trunk[0],
        "g1_conv": generator.global_trunk[0][0],
        "g1_bn": generator.global_trunk[0][2],
        "mid2_bn": generator.mid[1][2],
        "dense_1": generator.global_dense[0],
        "dense_4": generator.class_head[0],
    }
    handles = []
    for name, module in modules.items():

        def hook(module, inputs, output, name=name):
            seen[name] = (inputs[0].detach().clone(), output.detach().clone())

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            ab, probs = generator(L)
    finally:
        for h in handles:
            h.remove()
    return seen, ab, probs


def _conv_at(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, y: int, x_: int, stride: int
) -> np.ndarray:
    """Keras conv (cross-correlation) output at (y, x) for all channels; x already padded, CHW."""
    k = kernel.shape[0]
    patch = x[:, y * stride : y * stride + k, x_ * stride : x_ * stride + k]  # (C, k, k)
    return np.einsum("chw,hwco->o", patch.astype(np.float64), kernel.astype(np.float64)) + bias


def test_numpy_reference_matches_imported_generator(arrays, imported):
    torch.manual_seed(1)
    L = torch.rand(2, 1, 64, 64)
    seen, _, probs = _capture(imported, L)

    # (a) first trunk conv, stride 1, symmetric padding 1
    inp, out = seen["conv1"]
    x = np.pad(inp[0].numpy(), ((0, 0), (1, 1), (1, 1)))
    k, b = arrays["block1_conv1"]["kernel"], arrays["block1_conv1"]["bias"]
    for y, xx in [(0, 0), (5, 17), (63, 63), (31, 0)]:
        np.testing.assert_allclose(
            out[0, :, y, xx].numpy(), _conv_at(x, k, b, y, xx, 1), rtol=1e-4, atol=1e-5
        )

    # (b) conv2d_6: stride 2, TF SAME pads 0 before and 1 after on even inputs
    inp, out = seen["g1_conv"]
    assert inp.shape[-1] == 8 and out.shape[-1] == 4
    x = np.pad(inp[1].numpy(), ((0, 0), (0, 1), (0, 1)))
    k, b = arrays["conv2d_6"]["kernel"], arrays["conv2d_6"]["bias"]
    for y, xx in [(0, 0), (1, 2), (3, 3), (3, 0)]:
        np.testing.assert_allclose(
            out[1, :, y, xx].numpy(), _conv_at(x, k, b, y, xx, 2), rtol=1e-4, atol=1e-4
        )

    # (c) BatchNorm, eps 1e-3, Keras arrays
    for name, layer in [("g1_bn", "batch_normalization_1"), ("mid2_bn", "batch_normalization_6")]:
        inp, out = seen[name]
        p = {w: arrays[layer][w][None, :, None, None] for w in BN_ORDER}
        ref = (
            p["gamma"] * (inp.numpy() - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 1e-3)
            + p["beta"]
        )
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)

    # (d) dense_1 on the (h, w, c) flatten of the global trunk output, kernel used as stored
    flat = seen["dense_1"][0].numpy()
    with torch.no_grad():
        g_out = imported.global_trunk(imported.trunk(L.expand(-1, 3, -1, -1))).numpy()
    flat_nhwc = g_out.transpose(0, 2, 3, 1).reshape(2, -1)
    np.testing.assert_allclose(flat, flat_nhwc, rtol=1e-5, atol=1e-6)
    ref = flat_nhwc.astype(np.float64) @ arrays["dense_1"]["kernel"] + arrays["dense_1"]["bias"]
    np.testing.assert_allclose(seen["dense_1"][1].numpy(), ref, rtol=1e-4, atol=1e-4)

    # (e) dense_4, the class head's first layer, on the same flatten
    ref4 = flat_nhwc.astype(np.float64) @ arrays["dense_4"]["kernel"] + arrays["dense_4"]["bias"]
    np.testing.assert_allclose(seen["dense_4"][1].numpy(), ref4, rtol=1e-4, atol=1e-4)

    # (f) class probabilities: softmax of dense_4 -> dense_5 -> dense_6 (all linear)
    h = ref4 @ arrays["dense_5"]["kernel"] + arrays["dense_5"]["bias"]
    logits = h @ arrays["dense_6"]["kernel"] + arrays["dense_6"]["bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(
        probs.numpy(), e / e.sum(axis=1, keepdims=True), rtol=1e-3, atol=1e-6
    )


def test_missing_conv_group(arrays, tmp_path):
    path = write_keras_h5(tmp_path / "m.h5", arrays, drop=("conv2d_17",))
    with pytest.raises(CheckpointError, match="expected 12 conv2d layers, found 11"):
        import_keras_weights(path, SMALL)


def test_missing_trunk_group(arrays, tmp_path):
    path = write_keras_h5(tmp_path / "m.h5", arrays, drop=("model_2",))
    with pytest.raises(
        CheckpointError, match=r"no VGG16 trunk group \(20 arrays named block\*_conv\*\)"
    ):
        import_keras_weights(path, SMALL)


def test_wrong_shape_names_the_group(arrays, tmp_path):
    bad = {k: dict(v) for k, v in arrays.items()}
    k = bad["conv2d_9"]["kernel"]
    bad["conv2d_9"]["kernel"] = np.zeros((*k.shape[:3], k.shape[3] // 2), np.float32)
    path = write_keras_h5(tmp_path / "w.h5", bad)
    with pytest.raises(
        CheckpointError,
        match=r"group 'conv2d_9': kernel has shape \(3, 3, 64, 32\), expected \(3, 3, 64, 64\)",
    ):
        import_keras_weights(path, SMALL)


def test_full_size_file_does_not_fit_small_config(keras_file):
    with pytest.raises(CheckpointError, match="group 'model_2/block1_conv1': kernel has shape"):
        import_keras_weights(keras_file)  # default config: the paper's width


def test_truncated_and_text_files(keras_file, tmp_path):
    cut = tmp_path / "cut.h5"
    data = keras_file.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.h5"
    text.write_text("this is not HDF5\n")
    for path in (cut, text):
        with pytest.raises(CheckpointError, match="is not a readable HDF5 file"):
            import_keras_weights(path, SMALL)
    with pytest.raises(CheckpointError, match="does not exist"):
        import_keras_weights(tmp_path / "absent.h5", SMALL)


def test_checkpoint_in_cache_round_trips(keras_file, imported):
    written = import_keras_weights_to_checkpoint(keras_file, config=SMALL)
    assert written == user_weights_dir() / CHECKPOINT_NAME
    assert resolve_weights() == written
    ckpt = load_checkpoint(written)
    assert ckpt.config == SMALL
    assert ckpt.metadata["variant"] == "chromagan" and ckpt.class_head_trained is True
    assert ckpt.metadata["data"] == "ImageNet ILSVRC-2012"
    torch.manual_seed(2)
    L = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        ab1, p1 = imported(L)
        ab2, p2 = ckpt.generator(L)
    assert torch.equal(ab1, ab2) and torch.equal(p1, p2)
    with pytest.raises(FileExistsError, match="overwrite"):
        import_keras_weights_to_checkpoint(keras_file, config=SMALL)
    assert import_keras_weights_to_checkpoint(keras_file, config=SMALL, overwrite=True) == written


def test_cli_import_weights(keras_file, tmp_path, monkeypatch, capsys):
    import napari_chromagan.weights.keras_import as ki

    # the CLI imports the paper's architecture; run it on the small file via the default config
    real = ki.import_keras_weights
    monkeypatch.setattr(ki, "import_keras_weights", lambda path, config=None: real(path, SMALL))
    out = tmp_path / "out.pt"
    assert main(["import-weights", str(keras_file), "-o", str(out)]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert load_checkpoint(out).config == SMALL
    assert main(["import-weights", str(keras_file), "-o", str(out)]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert main(["import-weights", str(keras_file), "-o", str(out), "--overwrite"]) == 0
    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    assert main(["import-weights", str(bad), "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "not a readable HDF5 file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


def test_missing_h5py_says_how_to_install(keras_file, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r'pip install "napari-chromagan\[keras\]"'):
        import_keras_weights(keras_file, SMALL)

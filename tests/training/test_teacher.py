"""The VGG16 teacher: torchvision and Keras files give the same network; input conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_chromagan.errors import CheckpointError
from napari_chromagan.model.generator import Generator, ModelConfig
from training.teacher import (
    Teacher,
    VGG16Classifier,
    init_trunk_from_vgg16,
    load_teacher,
    load_vgg16_state,
)

_CONVS = [
    f"block{b}_conv{i}"
    for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for i in range(1, n + 1)
]
_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


@pytest.fixture
def tiny_vgg() -> VGG16Classifier:
    torch.manual_seed(0)
    return VGG16Classifier(base=4, hidden=16).eval()


def _write_keras_h5(model: VGG16Classifier, path, top: bool = True) -> None:
    """The layout of Keras' VGG16 h5 (layer groups, 'name/kernel:0' datasets, HWIO kernels).

    ``top=False``: the layout of ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, the 13
    convolutions and the pooling layers, no classifier.
    """
    h5py = pytest.importorskip("h5py")
    state = model.state_dict()
    pools = [f"block{b}_pool" for b in range(1, 6)]
    layers = ["input_1", *_CONVS, *(("flatten", "fc1", "fc2", "predictions") if top else pools)]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        for name in layers:
            f.create_group(name).attrs["weight_names"] = []
        for name, index in zip(_CONVS, _CONV_INDICES, strict=True):
            w = state[f"features.{index}.weight"].numpy().transpose(2, 3, 1, 0)
            g = f[name]
            g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g.create_dataset(f"{name}/kernel:0", data=w)
            g.create_dataset(f"{name}/bias:0", data=state[f"features.{index}.bias"].numpy())
        if not top:
            return
        channels = state["features.28.weight"].shape[0]
        for name, index in zip(("fc1", "fc2", "predictions"), (0, 3, 6), strict=True):
            w = state[f"classifier.{index}.weight"].numpy().T  # (in, out)
            if index == 0:  # torchvision flattens (c, h, w); Keras (h, w, c)
                w = w.reshape(channels, 7, 7, -1).transpose(1, 2, 0, 3).reshape(channels * 49, -1)
            g = f[name]
            g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g.create_dataset(f"{name}/kernel:0", data=w)
            g.create_dataset(f"{name}/bias:0", data=state[f"classifier.{index}.bias"].numpy())


def test_torchvision_file_round_trips(tiny_vgg, tmp_path):
    path = tmp_path / "vgg16.pth"
    torch.save(tiny_vgg.state_dict(), path)
    state, convention = load_vgg16_state(path)
    assert convention == "torchvision"
    rebuilt = VGG16Classifier.from_state_dict(state).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), tiny_vgg(x))


def test_keras_h5_gives_the_same_classifier(tiny_vgg, tmp_path):
    """Catches a wrong kernel transpose or a wrong flatten order in fc1."""
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    _write_keras_h5(tiny_vgg, path)
    state, convention = load_vgg16_state(path)
    assert convention == "caffe"
    rebuilt = VGG16Classifier.from_state_dict(state).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), tiny_vgg(x), rtol=1e-5, atol=1e-5)


def test_teacher_inputs(tiny_vgg):
    L = torch.rand(3, 1, 32, 32)
    imagenet = Teacher(tiny_vgg, "torchvision", "imagenet")
    raw = Teacher(tiny_vgg, "torchvision", "raw")
    p_imagenet, p_raw = imagenet(L), raw(L)
    assert p_imagenet.shape == (3, 1000)
    torch.testing.assert_close(p_imagenet.sum(1), torch.ones(3))
    # raw: the authors' L in [0, 1] copied to three channels, nothing else
    with torch.no_grad():
        torch.testing.assert_close(p_raw, torch.softmax(tiny_vgg(L.expand(-1, 3, -1, -1)), 1))
    # imagenet: the exact sRGB gray of L*, then torchvision's mean/std
    from skimage.color import lab2rgb

    lab = np.zeros((32, 32, 3))
    lab[..., 0] = L[0, 0].numpy() * 100
    gray = lab2rgb(lab)[..., 0]
    x = (
        torch.tensor(gray, dtype=torch.float32)[None]
        - torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    ) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(
            p_imagenet[0], torch.softmax(tiny_vgg(x[None]), 1)[0], rtol=1e-4, atol=1e-6
        )
    # the teacher never trains
    imagenet.train()
    assert not imagenet.classifier.training
    assert not any(p.requires_grad for p in imagenet.parameters())


def test_load_teacher_and_errors(tiny_vgg, tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(tiny_vgg.state_dict(), path)
    assert isinstance(load_teacher(path), Teacher)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_teacher(tmp_path / "missing.pth")
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a torchvision-layout VGG16"):
        load_teacher(tmp_path / "other.pth")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError, match="not a readable HDF5"):
        load_teacher(tmp_path / "junk.h5")


def test_trunk_init_refuses_a_mismatched_vgg(tiny_vgg, tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(tiny_vgg.state_dict(), path)
    generator = Generator(ModelConfig(width=0.125, image_size=64))
    before = {k: v.clone() for k, v in generator.trunk.state_dict().items()}
    with pytest.raises(CheckpointError, match="width=1.0"):
        init_trunk_from_vgg16(generator, path)
    for k, v in generator.trunk.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_keras_h5_without_top_initialises_the_trunk(tmp_path):
    """The "notop" file gives every conv tensor (HWIO -> OIHW) and no classifier; the trunk takes it."""
    torch.manual_seed(1)
    vgg = VGG16Classifier(base=8, hidden=16).eval()  # base 8 = the channels of a width-0.125 trunk
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_keras_h5(vgg, path, top=False)
    state, convention = load_vgg16_state(path)
    assert convention == "caffe"
    source = vgg.state_dict()
    assert sorted(state) == sorted(k for k in source if k.startswith("features."))
    for key, value in state.items():
        torch.testing.assert_close(value, source[key], rtol=0, atol=0)

    generator = Generator(ModelConfig(width=0.125, image_size=64))
    init_trunk_from_vgg16(generator, path)
    trunk = generator.trunk.state_dict()
    for index in _CONV_INDICES[:10]:  # the trunk stops at block4_conv3
        for name in ("weight", "bias"):
            torch.testing.assert_close(
                trunk[f"{index}.{name}"], source[f"features.{index}.{name}"], rtol=0, atol=0
            )


def test_teacher_refuses_a_file_without_top(tiny_vgg, tmp_path):
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_keras_h5(tiny_vgg, path, top=False)
    with pytest.raises(CheckpointError, match="teacher needs the classifier layers") as info:
        load_teacher(path)
    message = str(info.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in message
    assert "vgg16-397923af.pth" in message


def test_keras_h5_with_part_of_the_top_is_refused(tiny_vgg, tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "vgg16.h5"
    _write_keras_h5(tiny_vgg, path)
    with h5py.File(path, "a") as f:
        del f["predictions"]
    with pytest.raises(CheckpointError, match="predictions are missing"):
        load_vgg16_state(path)


def _count_loads(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = torch.load

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return calls


def test_a_teacher_file_is_read_once_whichever_network_it_holds(tiny_vgg, tmp_path, monkeypatch):
    from napari_chromagan.model.efficientnet import EfficientNetLite

    torch.manual_seed(1)
    lite = EfficientNetLite("efficientnet-lite0", num_classes=10).eval()
    torch.save(lite.state_dict(), tmp_path / "lite0.pth")
    torch.save(tiny_vgg.state_dict(), tmp_path / "vgg.pth")
    calls = _count_loads(monkeypatch)

    teacher = load_teacher(tmp_path / "lite0.pth")
    assert calls == [str(tmp_path / "lite0.pth")]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # the same network as the one saved (a random one: no wheel needed)
        torch.testing.assert_close(teacher.classifier(x), lite(x))

    calls.clear()
    assert isinstance(load_teacher(tmp_path / "vgg.pth").classifier, VGG16Classifier)
    assert calls == [str(tmp_path / "vgg.pth")]


def test_an_efficientnet_file_of_no_known_variant_is_refused(tmp_path):
    from napari_chromagan.model.efficientnet import EfficientNetLite

    state = EfficientNetLite("efficientnet-lite0", num_classes=10).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("_blocks.15.")}  # one block short
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(
        CheckpointError, match=r"odd\.pth is an EfficientNet state dict, but not of"
    ):
        load_teacher(tmp_path / "odd.pth")

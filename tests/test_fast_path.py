"""The engine's fast-path options on the CPU: bf16 autocast, torch.compile, and their guards.

The pinned-memory staging only runs with a CUDA device; here we check that the CPU never takes it.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import TINY, make_generator
from skimage import data
from skimage.color import deltaE_ciede2000, rgb2lab

import napari_chromagan.weights.lookup as weights_module
from napari_chromagan import Colorizer
from napari_chromagan.engine.colorize import Colorizer as EngineColorizer
from napari_chromagan.engine.compiled import compile_options, compiled_batch
from napari_chromagan.weights.checkpoint import save_checkpoint

SHIPPED = weights_module.PACKAGED_WEIGHTS  # the real path (conftest redirects it only inside tests)

# bf16 keeps 8 bits of mantissa: the sigmoid output s in (0, 1) moves by up to ~2**-9 per
# rounding, and a* = 255 s - 128 magnifies that 255 times. Asserted, in Lab units:
BF16_MEAN_AB = 0.5  # mean |delta a*b*| over all pixels and both channels (seen: 0.19-0.25)
BF16_MAX_AB = 3.0  # worst pixel of a random network (seen: 0.56-0.70)


def _photos() -> dict[str, np.ndarray]:
    """Real photographs from skimage.data, gray and colour, at a few sizes."""
    return {
        "camera": data.camera(),  # (512, 512) uint8 gray
        "coffee": data.coffee()[::2, ::2],  # (200, 300, 3) colour, recoloured from its L*
        "astronaut": data.astronaut()[::3, ::3],  # (171, 171, 3)
    }


def _assert_bf16_close(fp32, bf16, label: str, max_ab: float = BF16_MAX_AB) -> None:
    diff = np.abs(bf16.ab - fp32.ab)
    assert diff.mean() < BF16_MEAN_AB and diff.max() < max_ab, (label, diff.mean(), diff.max())
    # bf16 really ran: the outputs are not bit-identical
    assert diff.max() > 0, label
    # lightness never goes through the network: identical, bit for bit
    np.testing.assert_array_equal(bf16.L, fp32.L)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_the_cpu_follows_native_bf16(tiny_generator, monkeypatch, native):
    from napari_chromagan import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    auto = Colorizer(tiny_generator, "cpu")
    assert auto.precision == "auto"
    assert auto.autocast_dtype is (torch.bfloat16 if native else None)
    assert device.auto_uses_bf16(torch.device("cuda")) and not device.auto_uses_bf16(
        torch.device("mps")
    )
    L = torch.rand(2, 1, tiny_generator.config.image_size, tiny_generator.config.image_size)
    fp32 = Colorizer(tiny_generator, "cpu", precision="fp32").predict(L)[0]
    got = auto.predict(L)[0]
    assert torch.equal(got, fp32) is (not native)  # bf16 arithmetic changes the last bits


def test_precision_resolves_per_device(tiny_generator):
    assert Colorizer(tiny_generator, "cpu", precision="fp32").autocast_dtype is None
    bf16 = Colorizer(tiny_generator, "cpu", precision="bf16")
    assert bf16.autocast_dtype is torch.bfloat16 and bf16.precision == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        Colorizer(tiny_generator, "cpu", precision="fp16")  # type: ignore[arg-type]


def test_bf16_autocast_runs_the_network_in_bf16_on_the_cpu(tiny_generator):
    from napari_chromagan.device import cpu_has_native_bf16

    seen = []
    conv = tiny_generator.trunk[0]
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    L = torch.rand(2, 1, TINY.image_size, TINY.image_size)
    for precision in ("auto", "fp32", "bf16"):
        ab, probs = Colorizer(tiny_generator, "cpu", precision=precision).predict(L)
        assert ab.dtype == torch.float32 and probs.dtype == torch.float32  # outputs stay float32
    auto = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert seen == [auto, torch.float32, torch.bfloat16]


def test_bf16_agrees_with_fp32_on_a_random_tiny_generator(tiny_generator):
    fp32 = Colorizer(tiny_generator, "cpu", precision="fp32")
    bf16 = Colorizer(tiny_generator, "cpu", precision="bf16")
    stack = np.random.default_rng(0).integers(0, 65535, (3, 90, 120), dtype=np.uint16)
    ref, fast = fp32.colorize(stack, batch_size=2), bf16.colorize(stack, batch_size=2)
    _assert_bf16_close(ref, fast, "random")
    np.testing.assert_allclose(fast.class_probs, ref.class_probs, atol=5e-3)
    for label, image in _photos().items():
        _assert_bf16_close(fp32.colorize(image), bf16.colorize(image), label)


def test_bf16_agrees_with_fp32_on_photos_with_the_trained_default_model(tmp_path):
    ref = Colorizer.from_checkpoint(SHIPPED, "cpu", precision="fp32")
    fast = Colorizer.from_checkpoint(SHIPPED, "cpu", precision="bf16")
    assert fast.autocast_dtype is torch.bfloat16 and ref.autocast_dtype is None
    for label, image in _photos().items():
        a, b = ref.colorize(image, with_class=False), fast.colorize(image, with_class=False)
        # bf16's rounding accumulates through the trained trunk: one pixel of the camera photo
        # moved 4.1 Lab units with the network at 256 (2.8 at 224); a broken cast moves tens
        _assert_bf16_close(a, b, label, max_ab=6.0)
        # the rule bf16 was chosen by (issue 16, bench/bench_precision.py): CIEDE2000 between
        # the two outputs, mean below 1.0 and 99th percentile below 3.0
        de = deltaE_ciede2000(rgb2lab(a.rgb), rgb2lab(b.rgb))
        assert de.mean() < 1.0 and np.percentile(de, 99) < 3.0, (label, de.mean())
        # the colours are real, not gray: the tolerance is small next to the signal
        assert np.abs(a.ab).mean() > 3 * BF16_MEAN_AB, label


def test_from_checkpoint_passes_precision_and_compile_through(
    tmp_path, tiny_generator, monkeypatch
):
    path = save_checkpoint(tmp_path / "w.pt", tiny_generator, {})
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(kw) or module)
    c = Colorizer.from_checkpoint(path, device="cpu", precision="bf16", compile=True)
    assert c.precision == "bf16" and c.autocast_dtype is torch.bfloat16
    assert c.compiled and compiled == [{"dynamic": False}]


def test_cuda_graphs_off_cuda_compile_without_them(tiny_generator, monkeypatch, caplog):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(kw) or module)
    with caplog.at_level(logging.INFO, logger="napari_chromagan.engine.colorize"):
        c = Colorizer(tiny_generator, "cpu", cuda_graphs=True)
    assert c.compiled and not c.cuda_graphs
    assert compiled == [{"dynamic": False}]
    assert "CUDA graphs need a CUDA device" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graphs_agree_with_eager_and_outputs_survive_the_next_replay(tiny_generator):
    eager = Colorizer(tiny_generator, "cuda", precision="fp32")
    graphs = Colorizer(make_generator(TINY), "cuda", precision="fp32", cuda_graphs=True)
    graphs.generator.load_state_dict(eager.generator.state_dict())
    assert graphs.cuda_graphs and graphs.compiled
    L1, L2 = torch.rand(2, 4, 1, TINY.image_size, TINY.image_size, device="cuda")
    first = [graphs.predict(L1) for _ in range(3)]  # warm-up, recording, replay
    second = graphs.predict(L2)
    for ab, probs in first:  # not overwritten by the later replay
        ref_ab, ref_probs = eager.predict(L1)
        torch.testing.assert_close(ab, ref_ab, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(probs, ref_probs, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(second[0], eager.predict(L2)[0], atol=1e-3, rtol=1e-3)


def test_the_cpu_never_touches_pinned_memory(tiny_generator, monkeypatch):
    c = EngineColorizer(tiny_generator, "cpu")
    assert c.pinned is False
    real_empty = torch.empty

    def empty(*args, **kwargs):
        assert not kwargs.get("pin_memory", False), "pinned memory requested on the CPU"
        return real_empty(*args, **kwargs)

    def pin_memory(self, *args, **kwargs):
        raise AssertionError("pinned memory requested on the CPU")

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    r = c.colorize(
        np.random.default_rng(1).integers(0, 255, (3, 40, 50), dtype=np.uint8), batch_size=2
    )
    assert r.rgb.shape == (3, 40, 50, 3)


def test_compile_failure_falls_back_to_eager_with_a_warning(tiny_generator, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: broken)
    c = Colorizer(tiny_generator, "cpu", compile=True)
    eager = Colorizer(make_generator(), "cpu")
    image = np.random.default_rng(2).integers(0, 255, (50, 60), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="napari_chromagan.engine.colorize"):
        r = c.colorize(image)
    assert "torch.compile failed (RuntimeError: no C++ compiler)" in caplog.text
    assert c.compiled is False
    np.testing.assert_array_equal(r.rgb, eager.colorize(image).rgb)


def _recording_compile(monkeypatch) -> list[tuple[tuple[int, ...], bool]]:
    """Replace torch.compile by the module itself, recording each call's input shape and
    whether inductor's freezing was on during it."""
    import torch._inductor.config as inductor_config

    calls = []

    def fake_compile(module, **kwargs):
        def forward(x, with_class=True):
            calls.append((tuple(x.shape), inductor_config.freezing))
            return module(x, with_class=with_class)

        return forward

    monkeypatch.setattr(torch, "compile", fake_compile)
    return calls


def test_compiled_batches_are_padded_to_powers_of_two(tiny_generator, monkeypatch):
    calls = _recording_compile(monkeypatch)
    c = Colorizer(tiny_generator, "cpu", compile=True)
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 255, (7, 30, 40), dtype=np.uint8)
    r = c.colorize(stack, batch_size=4)
    S = TINY.image_size
    assert [shape for shape, _ in calls] == [(4, 1, S, S)] * 2  # the last batch (3) padded to 4
    ref = Colorizer(make_generator(), "cpu").colorize(stack, batch_size=4)
    np.testing.assert_allclose(r.ab, ref.ab, atol=1e-3)
    np.testing.assert_allclose(r.class_probs, ref.class_probs, atol=1e-5)
    assert r.class_probs.shape == (7, 1000)
    # a single plane runs as one, not as a padded batch_size (8 by default)
    calls.clear()
    c.colorize(stack[0])
    c.colorize(stack[:3])
    assert [shape[0] for shape, _ in calls] == [1, 4]


@pytest.mark.parametrize(
    ("n", "batch_size", "expected"),
    [(1, 8, 1), (2, 8, 2), (3, 8, 4), (5, 8, 8), (8, 8, 8), (3, 3, 3), (5, 6, 6), (9, 8, 8)],
)
def test_compiled_batch(n, batch_size, expected):
    assert compiled_batch(n, batch_size) == expected


def test_cpu_compiles_with_freezing_only_around_its_own_calls(tiny_generator, monkeypatch):
    """Inductor's freezing (weights as constants: 1.45x on the default network) is patched in
    around the compiled network's calls, where compilation happens; the process's config is
    left alone."""
    import torch._inductor.config as inductor_config

    calls = _recording_compile(monkeypatch)
    before = inductor_config.freezing
    c = Colorizer(tiny_generator, "cpu", compile=True)
    c.colorize(np.random.default_rng(5).integers(0, 255, (30, 40), dtype=np.uint8))
    assert [frozen for _, frozen in calls] == [True]
    assert inductor_config.freezing == before
    assert compile_options(torch.device("cpu"), False) == ({}, {"freezing": True})
    assert compile_options(torch.device("cuda"), True) == ({"mode": "reduce-overhead"}, {})
    assert compile_options(torch.device("cuda"), False) == ({}, {})


@pytest.mark.slow
def test_compiled_and_eager_outputs_agree(tiny_generator):
    """Real torch.compile (inductor, C++ on the CPU): 12-20 s on two cores, mostly compiling."""
    compiled = Colorizer(tiny_generator, "cpu", precision="fp32", compile=True)
    eager = Colorizer(make_generator(), "cpu", precision="fp32")
    # one batch shape, one compilation (a 3-plane stack in batches of 2 compiled twice: 88 s here)
    stack = np.random.default_rng(4).integers(0, 65535, (2, 70, 90), dtype=np.uint16)
    a = compiled.colorize(stack, batch_size=2, with_class=False)
    assert compiled.compiled, "torch.compile fell back to eager"
    b = eager.colorize(stack, batch_size=2, with_class=False)
    # predict's a*, b* are 255x the network's sigmoid output: compare at the network's scale
    np.testing.assert_allclose(a.ab / 255.0, b.ab / 255.0, atol=1e-4)
    np.testing.assert_array_equal(a.L, b.L)
    assert np.abs(a.rgb.astype(int) - b.rgb).max() <= 1

"""The stored result of a colourised layer: its cost, its round trip, the old layout, its accuracy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import make_generator
from napari.layers import Image

from napari_chromagan import colorize_layer
from napari_chromagan.edit import stack_smoothing
from napari_chromagan.edit.blend import (
    BlendParams,
    apply_to_stack,
    render_plane,
    render_rgb,
    smooth_ab,
)
from napari_chromagan.edit.hints import ColorHints, HintParams, iter_color_hints
from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.napari.layer_result import (
    METADATA_KEY,
    LayerResult,
    PackedLightness,
    get_layer_result,
    pack_ab,
    result_metadata,
)

L_STEP = 100 / 65535  # one uint16 code of L*
# Stored vs float32 renderings (Chroma blend, hints): measured on 12 photographs with the default
# weights by bench/bench_layer_memory.py (results/layer-memory-vm-20261201.json): at most 2 levels
# of 0-255 on at most 1.4 % of the pixels. The synthetic results below are more saturated (a*b*
# up to 110, where float16 rounds to 1/16): 1 level on 2 % of the pixels; allow a little more.
MAX_LEVELS = 2
MAX_DIFFERING = 0.03


def metadata_nbytes(layer) -> dict[str, int]:
    stored = layer.metadata[METADATA_KEY]
    return {k: v.nbytes for k, v in stored.items() if isinstance(v, np.ndarray)}


def saturated_result(stack=(3,), size=64, seed=0) -> LayerResult:
    """Float32 L* and a*b* as the engine gives them, with chroma across the whole float16 range."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    L = np.broadcast_to(5 + 90 * xx, (*stack, size, size)) + rng.normal(
        0, 0.3, (*stack, size, size)
    )
    ab = np.empty((*stack, size, size, 2))
    ab[..., 0] = 110 * np.cos(7 * yy + 3 * xx)
    ab[..., 1] = 105 * np.sin(6 * xx - 2 * yy)
    ab += rng.normal(0, 2.0, ab.shape)
    return LayerResult(
        np.clip(L, 0, 100).astype(np.float32),
        ab.astype(np.float32),
        None,
        True,
        source="gray",
        normalization={},
        weights=None,
        device="cpu",
    )


def levels_apart(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    d = np.abs(a.astype(int) - b.astype(int)).max(axis=-1)
    return int(d.max()), float((d > 0).mean())


# ------------------------------------------------------------------------------ cost


def test_a_colourised_stack_stores_6_bytes_per_pixel_beside_its_rgb():
    gray = np.random.default_rng(1).integers(0, 4000, (4, 40, 48), dtype=np.uint16)
    colorizer = Colorizer(make_generator(), "cpu")
    out = colorize_layer(Image(gray, name="vol"), None, colorizer, with_class=True)
    sizes = metadata_nbytes(out)
    pixels = gray.size
    assert set(sizes) == {"L_codes", "ab", "class_probs"}
    assert (sizes["L_codes"] + sizes["ab"]) / pixels == 6.0
    assert sizes["class_probs"] == 4 * 1000 * 4  # per plane, not per pixel
    assert out.data.dtype == np.uint8 and out.data.nbytes == 3 * pixels
    # the old layout, for comparison: 12 bytes per pixel
    result = colorizer.colorize(gray, with_class=False)
    assert (result.L.nbytes + result.ab.nbytes) / pixels == 12.0


def test_the_layer_shows_the_engines_own_rgb():
    gray = np.random.default_rng(2).integers(0, 255, (2, 32, 40), dtype=np.uint8)
    colorizer = Colorizer(make_generator(), "cpu")
    out = colorize_layer(Image(gray, name="g"), None, colorizer, with_class=False)
    engine = colorizer.colorize(gray, with_class=False)
    np.testing.assert_array_equal(out.data, engine.rgb)
    stored = get_layer_result(out)
    assert stored.is_packed
    assert np.abs(np.asarray(stored.L) - engine.L).max() <= L_STEP / 2 + 1e-5
    np.testing.assert_array_equal(stored.ab, engine.ab.astype(np.float16))


# ------------------------------------------------------------------------------ round trip


def test_round_trip_of_the_stored_result():
    original = saturated_result(stack=(2, 3), size=20)
    original = LayerResult(
        **{
            **original.__dict__,
            "class_probs": np.full((2, 3, 1000), 1e-3, np.float32),
            "plane": None,
            "blend": {"strength": 1.5},
            "provenance": {"software": "napari-chromagan"},
        }
    )
    layer = Image(
        np.zeros((2, 3, 20, 20, 3), np.uint8), rgb=True, metadata=result_metadata(original)
    )
    back = get_layer_result(layer)
    stored = layer.metadata[METADATA_KEY]
    assert stored["version"] == 2 and stored["L_codes"].dtype == np.uint16
    assert back.L.codes is stored["L_codes"] and back.ab is stored["ab"]  # shared, not copied
    L, ab = original.L, original.ab
    assert np.abs(np.asarray(back.L) - L).max() <= L_STEP / 2 + 1e-5
    np.testing.assert_array_equal(back.ab, ab.astype(np.float16))
    assert np.abs(back.ab.astype(np.float32) - ab).max() <= 1 / 32  # float16 below 128
    for name in (
        "class_probs",
        "class_head_trained",
        "source",
        "normalization",
        "blend",
        "provenance",
    ):
        assert np.all(getattr(back, name) == getattr(original, name)), name
    # storing it again changes nothing
    again = result_metadata(back)[METADATA_KEY]
    assert again["L_codes"] is stored["L_codes"] and again["ab"] is stored["ab"]


def test_packed_lightness_decodes_what_it_is_asked_for():
    rng = np.random.default_rng(3)
    L = rng.uniform(0, 100, (3, 17, 23)).astype(np.float32)
    L[0, 0, :3] = [0.0, 100.0, 100.00001]  # the engine's L* can exceed 100 by float rounding
    packed = PackedLightness.pack(L)
    assert packed.shape == L.shape and packed.nbytes == 2 * L.size and len(packed) == 3
    plane = packed[1]
    assert plane.dtype == np.float32 and plane.shape == (17, 23)
    assert np.abs(plane - L[1]).max() <= L_STEP / 2 + 1e-5
    np.testing.assert_array_equal(packed[1, 2:5], plane[2:5])
    np.testing.assert_array_equal(np.asarray(packed), packed[...])
    assert packed[0, 0, 2] == np.float32(100.0)
    # an 8-bit source normalised by its dtype (i * 100 / 255) is one code per level: exact to float32
    levels = (np.arange(256, dtype=np.float32) * np.float32(1 / 255)) * np.float32(100)
    assert (
        np.abs(PackedLightness.pack(levels.reshape(16, 16))[...] - levels.reshape(16, 16)).max()
        < 1e-5
    )
    with pytest.raises(ValueError, match="NaN"):
        PackedLightness.pack(np.full((4, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="uint16"):
        PackedLightness(np.zeros((4, 4), np.int32))


def test_packing_works_in_strips(monkeypatch):
    import napari_chromagan.napari.layer_result as lr

    result = saturated_result(stack=(2,), size=30)
    whole = result.packed()
    monkeypatch.setattr(lr, "_STRIP_PIXELS", 64)  # several strips per plane
    strips = result.packed()
    np.testing.assert_array_equal(strips.L.codes, whole.L.codes)
    np.testing.assert_array_equal(strips.ab, whole.ab)
    assert pack_ab(whole.ab) is whole.ab


# ------------------------------------------------------------------------------ old layers


def version_1_layer(result: LayerResult) -> Image:
    """A layer as napari-chromagan stored results before packing (float32 "L" and "ab")."""
    # written out key by key, as version 1 wrote it (not from today's dataclass)
    stored = {
        "version": 1,
        "L": result.L,
        "ab": result.ab,
        "class_probs": None,
        "class_head_trained": True,
        "source": "gray",
        "normalization": {"mode": "dtype", "low": 0.0, "high": 255.0, "percentiles": None},
        "weights": None,
        "device": "cpu",
        "plane": None,
        "blend": {},
        "provenance": None,
    }
    rgb = render_rgb(result.L, result.ab)
    return Image(rgb, rgb=True, name="old colorized", metadata={METADATA_KEY: stored})


def test_old_float32_layers_are_read_as_they_are():
    result = saturated_result(stack=(2,), size=24)
    layer = version_1_layer(result)
    old = get_layer_result(layer)
    assert old.L is layer.metadata[METADATA_KEY]["L"] and old.ab.dtype == np.float32
    assert not old.is_packed and old.stack_shape == (2,)
    p = BlendParams(strength=1.4, hue_degrees=20)
    np.testing.assert_array_equal(
        render_plane(old, p, (1,)), render_rgb(result.L[1], result.ab[1], p)
    )
    # stored again (a hinted copy, say): in the packed layout
    new = result_metadata(old)[METADATA_KEY]
    assert new["version"] == 2 and new["ab"].dtype == np.float16 and "L" not in new


def test_damaged_or_unknown_results_say_so():
    layer = Image(np.zeros((8, 8, 3), np.uint8), rgb=True, name="x")
    good = result_metadata(saturated_result(stack=(), size=8))[METADATA_KEY]
    for damage, message in [
        ({"ab": good["ab"].astype(np.float32)}, "damaged"),
        ({"L_codes": good["L_codes"].astype(np.int32)}, "damaged"),
        ({"version": 3}, "unknown version"),
    ]:
        layer.metadata = {METADATA_KEY: {**good, **damage}}
        with pytest.raises(ValueError, match=message):
            get_layer_result(layer)
    layer.metadata = {METADATA_KEY: {k: v for k, v in good.items() if k != "L_codes"}}
    with pytest.raises(ValueError, match="damaged"):
        get_layer_result(layer)


def test_the_metadata_schema_imports_no_torch():
    code = (
        "import sys; import napari_chromagan.napari.layer_result as m; "
        "bad = [n for n in ('torch', 'napari', 'qtpy', 'magicgui') if n in sys.modules]; "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------ what readers get


def test_blend_from_the_stored_result_is_within_the_measured_tolerance():
    result = saturated_result()
    stored = result.packed()
    for values in [
        {"strength": 1.5},
        {"strength": 0.5, "hue_degrees": 90},
        {"a_offset": 10, "b_offset": -6},
        {"gray": 0.4},
    ]:
        p = BlendParams(**values)
        apart = levels_apart(render_rgb(stored.L, stored.ab, p), render_rgb(result.L, result.ab, p))
        assert apart[0] <= MAX_LEVELS and apart[1] <= MAX_DIFFERING, (values, apart)
    # chroma off: L* alone, which is stored to within 1/131070 of its range
    p = BlendParams(strength=0.0)
    apart = levels_apart(render_rgb(stored.L, stored.ab, p), render_rgb(result.L, result.ab, p))
    assert apart[0] <= 1 and apart[1] < 0.01


def test_whole_stack_readers_take_the_packed_arrays_plane_by_plane(monkeypatch):
    stored = saturated_result(stack=(4,), size=24).packed()
    L32 = np.asarray(stored.L)
    p = BlendParams(strength=1.2, smooth_sigma=1.5)
    # float16 smoothing in several row blocks
    monkeypatch.setattr(stack_smoothing, "_STRIP_PIXELS", 100)
    np.testing.assert_array_equal(
        smooth_ab(stored.ab, 1.5, 0), smooth_ab(stored.ab.astype(np.float32), 1.5, 0)
    )
    np.testing.assert_array_equal(
        apply_to_stack(stored.L, stored.ab, p), apply_to_stack(L32, stored.ab, p)
    )
    np.testing.assert_array_equal(render_rgb(stored.L, stored.ab), render_rgb(L32, stored.ab))
    hints = ColorHints.from_points([[1, 12.0, 12.0]], [[220, 30, 30]], radius=4.0)
    outs = []
    for L in (stored.L, L32):
        out_ab = np.array(stored.ab, copy=True)  # float16, as the hints widget keeps it
        out_rgb = render_rgb(L32, stored.ab)
        for _ in iter_color_hints(L, stored.ab, hints, HintParams(), out_ab, out_rgb):
            pass
        outs.append((out_ab, out_rgb))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    assert outs[0][0].dtype == np.float16
    assert np.abs(outs[0][0][1].astype(np.float32) - stored.ab[1]).max() > 10  # the hint moved it

"""Bad inputs through the Python API: arrays, weights, batch sizes, folders. See ``bad_input_cases`` for what every case checks."""

from __future__ import annotations

import shutil
import warnings

import bad_input_cases
import numpy as np
import pytest
from bad_input_cases import Cases, Ctx, H, W, make_tests, png_header_only, says

from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.errors import (
    CheckpointError,
    MissingPixelsWarning,
    OutputError,
    UnsupportedImageError,
    WeightsNotFoundError,
)
from napari_chromagan.files import imageio
from napari_chromagan.weights.checkpoint import load_checkpoint
from napari_chromagan.weights.lookup import resolve_weights

CASES = Cases()
case = CASES.add


@case
def api_two_channel_array_is_refused(ctx: Ctx) -> None:
    image = np.random.default_rng(4).random((H, W, 2)).astype(np.float32)
    kept = image.copy()
    with pytest.raises(UnsupportedImageError) as info:
        ctx.engine.colorize(image)
    says(str(info.value), "(24, 32, 2)", "looks like 2 channels", "image[..., 0]", "rgb=False")
    assert np.array_equal(image, kept)


@case
def api_five_channel_dask_array_is_refused(ctx: Ctx) -> None:
    da = pytest.importorskip("dask.array")
    with pytest.raises(UnsupportedImageError) as info:
        ctx.engine.colorize(da.zeros((3, H, W, 5), dtype=np.uint16))
    says(str(info.value), "(3, 24, 32, 5)", "5 channels", "rgb=False if it really is a stack")


@case
def api_rgb_false_reads_a_narrow_last_axis_as_the_width(ctx: Ctx) -> None:
    stack = np.random.default_rng(5).integers(0, 256, (3, H, 2)).astype(np.uint8)
    result = ctx.engine.colorize(stack, rgb=False, with_class=False)
    assert result.rgb.shape == (3, H, 2, 3)  # what the caller said: 3 images 24 x 2 pixels


@case
def api_single_channel_axis_is_dropped(ctx: Ctx) -> None:
    image = np.random.default_rng(6).integers(0, 256, (H, W, 1)).astype(np.uint8)
    result = ctx.engine.colorize(image)
    expected = ctx.engine.colorize(image[..., 0])
    assert result.rgb.shape == (H, W, 3) and result.L.shape == (H, W)
    assert np.array_equal(result.rgb, expected.rgb)
    assert result.class_probs.shape == expected.class_probs.shape == (1000,)


@case
def api_load_checkpoint_with_nan(ctx: Ctx) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ctx.files["nan"])
    says(
        str(info.value),
        str(ctx.files["nan"]),
        "1 weight tensor holds NaN or inf",
        "decoder.",
        "earlier step",
    )


@case
def api_network_output_that_is_not_finite(ctx: Ctx) -> None:
    colorizer = Colorizer.from_checkpoint(ctx.files["nan_output"], "cpu")
    with pytest.raises(CheckpointError) as info:
        colorizer.colorize(np.zeros((H, W), np.uint8))
    says(str(info.value), "not finite", str(ctx.files["nan_output"]), "Use other weights")


@case
def api_all_nan_image_warns(ctx: Ctx) -> None:
    image = np.full((H, W), np.inf, np.float32)
    with pytest.warns(MissingPixelsWarning, match="every pixel of the image is NaN or inf"):
        result = ctx.engine.colorize(image)
    assert (result.rgb == result.rgb[0, 0]).all() and result.missing.all()


@case
def api_some_planes_all_nan_warns_naming_them(ctx: Ctx) -> None:
    stack = np.random.default_rng(7).random((4, H, W)).astype(np.float32)
    stack[2] = np.nan
    with pytest.warns(
        MissingPixelsWarning, match=r"1 of 4 planes \(index 2\) have no finite pixel"
    ):
        ctx.engine.colorize(stack)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingPixelsWarning)
        stack[2, 0, 0] = 0.5  # one finite pixel: not blank, no warning
        ctx.engine.colorize(stack)


@case
def api_batch_size_not_a_number(ctx: Ctx) -> None:
    with pytest.raises(TypeError) as info:
        ctx.engine.colorize(np.zeros((H, W), np.uint8), batch_size="abc")
    says(str(info.value), "batch_size must be a whole number >= 1", "'abc' (str)", "batch_size=8")


@case
def api_batch_size_zero(ctx: Ctx) -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        ctx.engine.colorize(np.zeros((H, W), np.uint8), batch_size=0)


@case
def api_colorize_layer_batch_size_checked_before_loading(ctx: Ctx) -> None:
    from napari.layers import Image as ImageLayer

    from napari_chromagan import colorize_layer

    ctx.monkeypatch.setattr(
        "napari_chromagan.napari.colorizer_cache.load_colorizer",
        lambda *a, **k: pytest.fail("weights were loaded before the arguments were checked"),
    )
    layer = ImageLayer(np.zeros((H, W), np.uint8), name="gray")
    with pytest.raises(TypeError) as info:
        colorize_layer(layer, batch_size="abc")
    says(str(info.value), "batch_size must be a whole number", "'abc'")
    assert layer.data.sum() == 0 and layer.name == "gray"


@case
def api_load_checkpoint_of_a_folder(ctx: Ctx) -> None:
    folder = ctx.tmp / "models"
    folder.mkdir()
    shutil.copy(ctx.weights, folder / "a.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    says(
        str(info.value), "is a folder, not a weights file", "a .pt checkpoint file inside it (a.pt)"
    )


@case
def api_resolve_weights_of_a_folder(ctx: Ctx) -> None:
    (ctx.tmp / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(ctx.tmp / "empty")
    says(
        str(info.value),
        "empty is a folder, not a weights file",
        "give the path of a .pt checkpoint file",
    )
    assert "does not exist" not in str(info.value)


@case
def api_weights_variable_naming_a_folder(ctx: Ctx) -> None:
    ctx.monkeypatch.setenv("NAPARI_CHROMAGAN_WEIGHTS", str(ctx.tmp))
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights()
    says(str(info.value), "$NAPARI_CHROMAGAN_WEIGHTS points to", "a folder, not a weights file")


@case
def api_read_image_refuses_a_bomb_with_its_override(ctx: Ctx) -> None:
    bomb = png_header_only(ctx.tmp / "huge.png", 30000, 10000)
    with pytest.raises(UnsupportedImageError) as info:
        imageio.read_image(bomb)
    says(str(info.value), "300,000,000 pixels", "decompression bombs", "max_pixels=300000000")
    assert "--max-pixels 300000000" in info.value.cli_message


@case
def api_import_into_a_read_only_folder_before_reading(ctx: Ctx) -> None:
    from napari_chromagan.weights.keras_import import import_keras_weights_to_checkpoint

    locked = ctx.readonly()
    before = ctx.snapshot()
    with pytest.raises(OutputError) as info:  # not CheckpointError: the .h5 is not even opened
        import_keras_weights_to_checkpoint(ctx.tmp / "absent.h5", locked / "out.pt")
    says(str(info.value), f"cannot write into the output folder {locked}", "somewhere else")
    ctx.unchanged(before)


@case
def api_evaluate_out_is_a_file_before_loading(ctx: Ctx) -> None:
    from training.evaluate import evaluate

    out = ctx.tmp / "summary"
    out.write_text("notes\n")
    before = ctx.snapshot()
    with pytest.raises(OutputError) as info:  # checked before the (absent) weights are looked for
        evaluate(ctx.tmp / "absent.pt", ctx.files["images"], out=out, progress=False)
    says(str(info.value), f"--out {out} is a file, not a folder", "choose a folder")
    ctx.unchanged(before)


# --------------------------------------------------------------------------- the one test

files, engine = bad_input_cases.files, bad_input_cases.engine  # the fixtures, by name
test_bad_input, test_the_cases_are_all_here = make_tests(CASES, at_least=17)

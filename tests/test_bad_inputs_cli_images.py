"""Bad input images on the ``napari-chromagan`` command line: odd channel counts, NaN pixels,
decompression bombs, empty, truncated and missing files. See ``bad_input_cases`` for what every case checks.
"""

from __future__ import annotations

import bad_input_cases
import numpy as np
from bad_input_cases import Cases, Ctx, H, W, cli_says, make_tests, png_header_only, says

from napari_chromagan.files import imageio

CASES = Cases()
case = CASES.add


@case
def cli_two_channel_tiff_is_not_a_stack_of_narrow_images(ctx: Ctx) -> None:
    source = ctx.tiff("two.tif", np.zeros((H, W, 2), np.uint16))
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 1
    cli_says(err, "two.tif", "looks like 2 channels", "--channel N", "0 to 1")
    ctx.unchanged(before)


@case
def cli_five_channel_tiff_is_refused(ctx: Ctx) -> None:
    source = ctx.tiff("five.tif", np.zeros((H, W, 5), np.float32))
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 1
    cli_says(err, "five.tif", "(24, 32, 5)", "looks like 5 channels", "--channel N")
    ctx.unchanged(before)


@case
def cli_channel_picks_one_channel(ctx: Ctx) -> None:
    planes = np.random.default_rng(1).integers(0, 60000, (H, W, 2)).astype(np.uint16)
    source = ctx.tiff("two.tif", planes)
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--channel", "1"
    )
    assert code == 0, err
    written = imageio.read_image(ctx.tmp / "out" / "two_colorized.tif")
    assert written.shape == (H, W, 3)
    assert np.array_equal(written, ctx.engine.colorize(planes[..., 1], with_class=False).rgb)
    ctx.unchanged(before, new=("out/two_colorized.tif",))


@case
def cli_channel_beyond_the_last_is_refused(ctx: Ctx) -> None:
    source = ctx.tiff("two.tif", np.zeros((H, W, 2), np.uint8))
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--channel", "2"
    )
    assert code == 1
    cli_says(err, "has 2 channels", "--channel 2 does not exist", "choose --channel 0 to 1")
    ctx.unchanged(before)


@case
def cli_one_channel_tiff_is_one_image(ctx: Ctx) -> None:
    plane = np.random.default_rng(2).integers(0, 256, (H, W, 1)).astype(np.uint8)
    source = ctx.tiff("one.tif", plane)
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 0, err
    written = imageio.read_image(ctx.tmp / "out" / "one_colorized.tif")
    assert written.shape == (H, W, 3)  # not a stack of 24 images 32 x 1 pixels
    assert np.array_equal(written, ctx.engine.colorize(plane[..., 0], with_class=False).rgb)
    ctx.unchanged(before, new=("out/one_colorized.tif",))


@case
def cli_all_nan_image_is_said_and_counted(ctx: Ctx) -> None:
    source = ctx.tiff("blank.tif", np.full((H, W), np.nan, np.float32))
    ctx.gray("ok.png")
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, ctx.tmp / "ok.png", "-o", ctx.tmp / "out", "--weights", ctx.weights
    )
    assert code == 0, err
    says(
        err,
        "warning:",
        "blank.tif",
        "every pixel of the image is NaN or inf",
        "uniform gray",
        "colourised 2 images",
        "1 had no finite pixel",
    )
    ctx.unchanged(before, new=("out/blank_colorized.tif", "out/ok_colorized.png"))


@case
def cli_decompression_bomb_is_explained_with_its_override(ctx: Ctx) -> None:
    bomb = png_header_only(ctx.tmp / "huge.png", 20000, 10000)
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", bomb, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 1
    cli_says(
        err,
        "huge.png",
        "20000 x 10000 = 200,000,000 pixels",
        "decompression bombs",
        "--max-pixels 200000000",
        "--max-pixels 0",
    )
    ctx.unchanged(before)


@case
def cli_max_pixels_limit_and_override(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--max-pixels", "100"
    )
    assert code == 1
    cli_says(err, f"{H * W:,} pixels", "limit of 100", f"--max-pixels {H * W}")
    ctx.unchanged(before)
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--max-pixels", "0"
    )
    assert code == 0, err
    ctx.unchanged(before, new=("out/a_colorized.png",))


@case
def cli_negative_max_pixels(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--max-pixels", "-5")
    assert code == 2
    cli_says(err, "--max-pixels", "must be 0 or more")
    ctx.unchanged(before)


@case
def cli_channel_not_a_number(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--channel", "red")
    assert code == 2
    cli_says(err, "--channel", "expected a whole number, got 'red'")
    ctx.unchanged(before)


@case
def cli_bool_tiff_is_read_as_black_and_white(ctx: Ctx) -> None:
    mask = np.random.default_rng(3).random((H, W)) > 0.5
    source = ctx.tiff("mask.tif", mask)
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 0, err
    expected = ctx.engine.colorize(mask.astype(np.uint8) * 255, with_class=False).rgb
    assert np.array_equal(imageio.read_image(ctx.tmp / "out" / "mask_colorized.tif"), expected)
    ctx.unchanged(before, new=("out/mask_colorized.tif",))


@case
def cli_complex_tiff_advice_is_for_the_command_line(ctx: Ctx) -> None:
    source = ctx.tiff("fft.tif", np.ones((H, W), np.complex64))
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 1
    cli_says(
        err,
        "fft.tif",
        "cannot colourise complex pixel values",
        "real-valued pixels",
        "its magnitude",
    )
    ctx.unchanged(before)


@case
def cli_empty_and_truncated_files_fail_alone(ctx: Ctx) -> None:
    (ctx.tmp / "empty.png").write_bytes(b"")
    good = ctx.gray("good.png")
    (ctx.tmp / "cut.png").write_bytes(good.read_bytes()[:60])
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize",
        ctx.tmp / "empty.png",
        ctx.tmp / "cut.png",
        good,
        "-o",
        ctx.tmp / "out",
        "--weights",
        ctx.weights,
    )
    assert code == 1
    cli_says(
        err,
        "empty.png: cannot read image (the file is empty)",
        "cut.png: cannot read image",
        "expected a complete PNG",
        "2 of 3 images failed",
    )
    ctx.unchanged(before, new=("out/good_colorized.png",))


@case
def cli_missing_input(ctx: Ctx) -> None:
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", ctx.tmp / "nope.png", "-o", ctx.tmp / "out")
    assert code == 2
    cli_says(err, "nope.png: no such file or folder")
    ctx.unchanged(before)


# --------------------------------------------------------------------------- the one test

files, engine = bad_input_cases.files, bad_input_cases.engine  # the fixtures, by name
test_bad_input, test_the_cases_are_all_here = make_tests(CASES, at_least=14)

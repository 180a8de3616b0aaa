"""Bad weights, outputs, devices and interruptions on the ``napari-chromagan`` command line.
See ``bad_input_cases`` for what every case checks.
"""

from __future__ import annotations

import shutil

import bad_input_cases
import torch
from bad_input_cases import Cases, Ctx, cli_says, make_tests

from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.files import imageio

CASES = Cases()
case = CASES.add


@case
def cli_weights_holding_nan(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.files["nan"])
    assert code == 2
    cli_says(err, str(ctx.files["nan"]), "NaN or inf", "decoder", "Use another checkpoint")
    ctx.unchanged(before)


@case
def cli_weights_whose_network_gives_nan(ctx: Ctx) -> None:
    ctx.gray("a.png")
    ctx.gray("b.png", seed=1)
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize",
        ctx.tmp / "a.png",
        ctx.tmp / "b.png",
        "-o",
        ctx.tmp / "out",
        "--weights",
        ctx.files["nan_output"],
    )
    assert code == 2  # stops at the first image: the others would fail the same way
    cli_says(err, "not finite", str(ctx.files["nan_output"]), "Use other weights")
    assert err.count("not finite") == 1
    ctx.unchanged(before)


@case
def cli_read_only_output_folder_fails_before_the_work(ctx: Ctx) -> None:
    source = ctx.gray()
    locked = ctx.readonly()
    ctx.forbid(
        Colorizer, "from_checkpoint", "the weights were loaded although nothing can be written"
    )
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", locked, "--weights", ctx.weights)
    assert code == 2
    cli_says(err, f"cannot write into the output folder {locked}", "choose another folder with -o")
    ctx.unchanged(before)


@case
def cli_output_folder_below_a_file(ctx: Ctx) -> None:
    source = ctx.gray()
    blocker = ctx.tmp / "notes.txt"
    blocker.write_text("a file, not a folder\n")
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", blocker / "out", "--weights", ctx.weights)
    assert code == 2
    cli_says(err, f"{blocker} is a file, not a folder", "choose another folder with -o")
    ctx.unchanged(before)


@case
def cli_weights_given_a_folder(ctx: Ctx) -> None:
    source = ctx.gray()
    folder = ctx.tmp / "models"
    folder.mkdir()
    shutil.copy(ctx.weights, folder / "mine.pt")
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", folder)
    assert code == 2
    cli_says(
        err,
        f"{folder} is a folder, not a weights file",
        "give the path of a .pt checkpoint file",
        "mine.pt",
    )
    assert "does not exist" not in err
    ctx.unchanged(before)


@case
def cli_ctrl_c_says_what_was_done_and_how_to_continue(ctx: Ctx) -> None:
    sources = [ctx.gray(f"{n}.png", seed=i) for i, n in enumerate("abc")]
    out = ctx.tmp / "out"
    real = imageio.write_image
    calls = []

    def write_then_interrupt(path, rgb, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, rgb, **kwargs)

    ctx.monkeypatch.setattr(imageio, "write_image", write_then_interrupt)
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", *sources, "-o", out, "--weights", ctx.weights)
    assert code == 130
    cli_says(err, "interrupted after 1 of 3 images", f"1 output is complete in {out}", "--resume")
    ctx.unchanged(before, new=("out/a_colorized.png",))
    # and --resume does the rest, leaving the finished output alone
    ctx.monkeypatch.setattr(imageio, "write_image", real)
    done = (out / "a_colorized.png").read_bytes()
    code, err = ctx.cli("colorize", *sources, "-o", out, "--weights", ctx.weights, "--resume")
    assert code == 0, err
    assert "skipping 1 image whose output already exists" in err
    assert (out / "a_colorized.png").read_bytes() == done
    assert sorted(p.name for p in out.iterdir()) == [
        "a_colorized.png",
        "b_colorized.png",
        "c_colorized.png",
    ]


@case
def cli_cuda_graphs_without_cuda_says_so_and_compiles_nothing(ctx: Ctx) -> None:
    compiled = []
    ctx.monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(kw) or module)
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize",
        source,
        "-o",
        ctx.tmp / "out",
        "--weights",
        ctx.weights,
        "--device",
        "cpu",
        "--cuda-graphs",
    )
    assert code == 0, err
    cli_says(err, "--cuda-graphs does nothing on cpu", "CUDA graphs need a CUDA GPU", "Ignored")
    assert compiled == []
    ctx.unchanged(before, new=("out/a_colorized.png",))


@case
def cli_compile_on_the_cpu_warns_before_compiling(ctx: Ctx) -> None:
    order = []
    ctx.monkeypatch.setattr(
        torch, "compile", lambda module, **kw: order.append("compile") or module
    )
    real = Colorizer.__init__

    def init(self, *args, **kwargs):
        order.append(
            "note said" if "--compile on cpu" in ctx.capsys.readouterr().err else "no note"
        )
        real(self, *args, **kwargs)

    ctx.monkeypatch.setattr(Colorizer, "__init__", init)
    source = ctx.gray()
    code, _ = ctx.cli(
        "colorize",
        source,
        "-o",
        ctx.tmp / "out",
        "--weights",
        ctx.weights,
        "--device",
        "cpu",
        "--compile",
    )
    assert code == 0
    assert order == ["note said", "compile"]


@case
def cli_existing_output_is_never_replaced_silently(ctx: Ctx) -> None:
    source = ctx.gray()
    (ctx.tmp / "out").mkdir()
    (ctx.tmp / "out" / "a_colorized.png").write_bytes(b"an earlier result")
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 2
    cli_says(err, "already exists", "--overwrite", "--skip-existing")
    ctx.unchanged(before)


@case
def cli_device_this_machine_lacks(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--device", "cuda:7"
    )
    assert code == 2
    cli_says(err, "cuda:7", "not available", "'auto' or 'cpu'")
    ctx.unchanged(before)


@case
def cli_weights_not_a_checkpoint(ctx: Ctx) -> None:
    source = ctx.gray()
    junk = ctx.tmp / "junk.pt"
    junk.write_bytes(b"<html>not found</html>")
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", junk)
    assert code == 2
    cli_says(err, "junk.pt is not a readable PyTorch file", "Download or export it again")
    ctx.unchanged(before)


@case
def cli_import_weights_into_a_read_only_folder_fails_before_reading(ctx: Ctx) -> None:
    locked = ctx.readonly()
    import napari_chromagan.weights.keras_import as keras_import

    ctx.forbid(
        keras_import,
        "import_keras_weights",
        "the .h5 was read although the result cannot be written",
    )
    (ctx.tmp / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    before = ctx.snapshot()
    code, err = ctx.cli("import-weights", ctx.tmp / "model.h5", "-o", locked / "model.pt")
    assert code == 2
    cli_says(
        err, f"cannot write into the output folder {locked}", "write the checkpoint somewhere else"
    )
    ctx.unchanged(before)


@case
def cli_import_weights_over_an_existing_file(ctx: Ctx) -> None:
    (ctx.tmp / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (ctx.tmp / "model.pt").write_bytes(b"an earlier checkpoint")
    before = ctx.snapshot()
    code, err = ctx.cli("import-weights", ctx.tmp / "model.h5", "-o", ctx.tmp / "model.pt")
    assert code == 2
    cli_says(err, "model.pt already exists", "pass --overwrite", "-o")
    ctx.unchanged(before)


@case
def cli_import_weights_into_a_folder_name(ctx: Ctx) -> None:
    (ctx.tmp / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (ctx.tmp / "models").mkdir()
    before = ctx.snapshot()
    code, err = ctx.cli("import-weights", ctx.tmp / "model.h5", "-o", ctx.tmp / "models")
    assert code == 2
    cli_says(
        err, "models is a folder", "give the checkpoint file to write", "chromagan-imagenet.pt"
    )
    ctx.unchanged(before)


@case
def cli_screenshot_that_exists(ctx: Ctx) -> None:
    shot = ctx.tmp / "shot.png"
    shot.write_bytes(b"an earlier screenshot")
    before = ctx.snapshot()
    code, err = ctx.cli("napari", "--screenshot", shot)
    assert code == 2
    cli_says(err, "shot.png exists", "remove it or choose another name")
    ctx.unchanged(before)


# --------------------------------------------------------------------------- the one test

files, engine = bad_input_cases.files, bad_input_cases.engine  # the fixtures, by name
test_bad_input, test_the_cases_are_all_here = make_tests(CASES, at_least=15)

"""Bad inputs to ``python -m training`` train, evaluate and export. See ``bad_input_cases`` for what every case checks."""

from __future__ import annotations

import json

import bad_input_cases
from bad_input_cases import Cases, Ctx, cli_says, make_tests

CASES = Cases()
case = CASES.add


@case
def train_out_is_a_file(ctx: Ctx) -> None:
    out = ctx.tmp / "run"
    out.write_text("not a run folder\n")
    before = ctx.snapshot()
    code, err = ctx.training(
        "train", "--data", ctx.files["images"], "--out", out, "--preset", "chromagan-noclass"
    )
    assert code == 2
    cli_says(err, f"--out {out} is a file, not a folder", "choose a folder")
    ctx.unchanged(before)


@case
def train_out_is_a_file_when_resuming(ctx: Ctx) -> None:
    out = ctx.tmp / "run"
    out.write_text("not a run folder\n")
    before = ctx.snapshot()
    code, err = ctx.training("train", "--out", out, "--resume", "latest")
    assert code == 2
    cli_says(err, "is a file, not a folder")
    ctx.unchanged(before)


@case
def train_out_read_only_fails_before_loading_the_data(ctx: Ctx) -> None:
    import training.train as train_module

    locked = ctx.readonly()
    ctx.forbid(
        train_module, "find_images", "the data was searched although --out cannot be written"
    )
    before = ctx.snapshot()
    code, err = ctx.training(
        "train",
        "--data",
        ctx.files["images"],
        "--out",
        locked / "run",
        "--preset",
        "chromagan-noclass",
        "--device",
        "cpu",
    )
    assert code == 2
    cli_says(err, "cannot write into --out", str(locked), "choose another --out folder")
    ctx.unchanged(before)


@case
def train_resume_latest_with_no_run_yet(ctx: Ctx) -> None:
    out = ctx.tmp / "runs" / "mine"
    before = ctx.snapshot()
    code, err = ctx.training("train", "--out", out, "--resume", "latest")
    assert code == 2
    cli_says(err, f"there is no run in {out} yet", "start one with --data DIR --out")
    assert "--data and --out are required" not in err
    assert not out.exists()
    ctx.unchanged(before)


@case
def train_resume_with_the_data_moved(ctx: Ctx) -> None:
    out = ctx.tmp / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.json").write_text(
        json.dumps({"data": str(ctx.tmp / "moved"), "out": str(out), "preset": "chromagan-noclass"})
    )
    before = ctx.snapshot()
    code, err = ctx.training("train", "--out", out, "--resume", "latest")
    assert code == 2
    cli_says(
        err, f"data {ctx.tmp / 'moved'} (from {out / 'config.json'}) does not exist", "pass --data"
    )
    ctx.unchanged(before)


@case
def train_data_folder_without_images(ctx: Ctx) -> None:
    (ctx.tmp / "photos").mkdir()
    (ctx.tmp / "photos" / "readme.txt").write_text("no images here\n")
    before = ctx.snapshot()
    code, err = ctx.training(
        "train",
        "--data",
        ctx.tmp / "photos",
        "--out",
        ctx.tmp / "run",
        "--preset",
        "chromagan-noclass",
        "--width",
        "0.125",
        "--image-size",
        "64",
        "--device",
        "cpu",
    )
    assert code == 2
    cli_says(err, "--data: no images found in", "point to the folder that holds the images")
    assert not (ctx.tmp / "run").exists() or not any((ctx.tmp / "run").iterdir())
    ctx.unchanged(before)


@case
def evaluate_out_is_a_file(ctx: Ctx) -> None:
    import training.evaluate as evaluate_module

    out = ctx.tmp / "eval"
    out.write_text("an earlier table\n")
    ctx.forbid(
        evaluate_module, "_score_batch", "images were scored although the results cannot be written"
    )
    before = ctx.snapshot()
    code, err = ctx.training(
        "evaluate", "--weights", ctx.weights, "--data", ctx.files["images"], "--out", out, "-q"
    )
    assert code == 2
    cli_says(err, f"--out {out} is a file, not a folder", "choose a folder")
    ctx.unchanged(before)


@case
def evaluate_out_read_only(ctx: Ctx) -> None:
    import training.evaluate as evaluate_module

    locked = ctx.readonly()
    ctx.forbid(
        evaluate_module, "_score_batch", "images were scored although the results cannot be written"
    )
    before = ctx.snapshot()
    code, err = ctx.training(
        "evaluate",
        "--weights",
        ctx.weights,
        "--data",
        ctx.files["images"],
        "--out",
        locked / "eval",
        "-q",
    )
    assert code == 2
    cli_says(err, "cannot write into --out", "choose another --out folder")
    ctx.unchanged(before)


@case
def evaluate_weights_given_a_folder(ctx: Ctx) -> None:
    before = ctx.snapshot()
    code, err = ctx.training(
        "evaluate", "--weights", ctx.files["images"], "--data", ctx.files["images"], "-q"
    )
    assert code == 2
    cli_says(err, "is a folder, not a weights file", "give the path of a .pt checkpoint file")
    ctx.unchanged(before)


@case
def export_evaluation_that_is_not_json(ctx: Ctx) -> None:
    notes = ctx.tmp / "summary.txt"
    notes.write_text("PSNR 23.4 dB\n")
    before = ctx.snapshot()
    code, err = ctx.training(
        "export", ctx.weights, "-o", ctx.tmp / "model.pt", "--evaluation", notes
    )
    assert code == 2
    cli_says(
        err,
        f"--evaluation {notes} is not JSON",
        "line 1 column 1",
        "the summary.json written by `python -m training evaluate",
    )
    ctx.unchanged(before)


@case
def export_evaluation_that_is_a_json_list(ctx: Ctx) -> None:
    listed = ctx.tmp / "summary.json"
    listed.write_text("[1, 2, 3]\n")
    before = ctx.snapshot()
    code, err = ctx.training(
        "export", ctx.weights, "-o", ctx.tmp / "model.pt", "--evaluation", listed
    )
    assert code == 2
    cli_says(err, "holds a JSON list, not a summary", "summary.json written by")
    ctx.unchanged(before)


@case
def export_output_is_a_folder(ctx: Ctx) -> None:
    (ctx.tmp / "models").mkdir()
    before = ctx.snapshot()
    code, err = ctx.training("export", ctx.weights, "-o", ctx.tmp / "models")
    assert code == 2
    cli_says(err, "is a folder; give the file to write", "model.pt")
    ctx.unchanged(before)


@case
def export_output_in_a_read_only_folder(ctx: Ctx) -> None:
    import training.export as export_module

    locked = ctx.readonly()
    ctx.forbid(
        export_module,
        "load_checkpoint",
        "the checkpoint was loaded although the export cannot be written",
    )
    before = ctx.snapshot()
    code, err = ctx.training("export", ctx.weights, "-o", locked / "model.pt")
    assert code == 2
    cli_says(err, "cannot write into the output folder", "choose another -o")
    ctx.unchanged(before)


@case
def export_over_an_existing_file(ctx: Ctx) -> None:
    (ctx.tmp / "model.pt").write_bytes(b"an earlier export")
    before = ctx.snapshot()
    code, err = ctx.training("export", ctx.weights, "-o", ctx.tmp / "model.pt")
    assert code == 2
    cli_says(err, "already exists", "choose another -o or pass --overwrite")
    ctx.unchanged(before)


@case
def export_checkpoint_holding_nan(ctx: Ctx) -> None:
    before = ctx.snapshot()
    code, err = ctx.training("export", ctx.files["nan"], "-o", ctx.tmp / "model.pt")
    assert code == 2
    cli_says(err, "NaN or inf", "another checkpoint")
    ctx.unchanged(before)


# --------------------------------------------------------------------------- the one test

files, engine = bad_input_cases.files, bad_input_cases.engine  # the fixtures, by name
test_bad_input, test_the_cases_are_all_here = make_tests(CASES, at_least=15)

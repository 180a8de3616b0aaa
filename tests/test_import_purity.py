"""What each module pulls in when it is imported alone, in a fresh interpreter.

The core (model, colour, engine, blend maths, hints, weights...) imports no Qt, napari or
magicgui; only the modules that compute with tensors import torch; the core never imports
``training``, and ``training`` never imports the plugin's command line or widgets. The module
lists come from the package folders, so a new module is covered without editing this file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import HANG_S

# one fork per module, in two interpreters: about 85 s on a 2 GHz two-core machine
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_chromagan"
TRAINING = ROOT / "training"

GUI = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui")
WATCHED = (*GUI, "torch", "training", "napari_chromagan.cli", "napari_chromagan.napari._widgets")

# Allowed Qt, napari and magicgui at import: the dock widgets are Qt widgets by definition (and
# magicgui/napari types in their signatures). Everything else that napari calls (layers,
# _writer, _sample_data, the `napari` subcommand) imports napari inside the functions that need it.
GUI_PACKAGES = ("napari_chromagan.napari._widgets",)

# Allowed torch at import, and why. Every other module of the plugin must import without it, so
# that `import napari_chromagan`, the command line's --help, the weights registry and napari's
# plugin discovery stay fast.
TORCH_MODULES = {
    "napari_chromagan.edit.blend": "chroma adjustments on tensors",
    "napari_chromagan.weights.checkpoint": "checkpoints are torch files holding a Generator",
    "napari_chromagan.color.lab": "Lab <-> sRGB on tensors",
    "napari_chromagan.engine.colorize": "the engine",
    "napari_chromagan.model.efficientnet": "the EfficientNet-Lite trunk, an nn.Module",
    "napari_chromagan.color.fastlab": "the fused Lab -> sRGB kernels run on tensors",
    "napari_chromagan.color.gamut": "the gamut fits run on tensors",
    "napari_chromagan.edit.hint_csv": "builds ColorHints, whose colours go to Lab through the tensor maths",
    "napari_chromagan.edit.hint_data": "hint colours go to Lab through the tensor maths (rgb_to_lab)",
    "napari_chromagan.edit.hint_solver": "the colour-hint solver works on the engine's tensors",
    "napari_chromagan.edit.hints": "colour hints re-render through the engine",
    "napari_chromagan.weights.keras_import": "copies Keras arrays into a Generator",
    "napari_chromagan.model.generator": "the networks",
    "napari_chromagan.model.inference": "folds BatchNorm into and casts a network's weights",
    "napari_chromagan.engine.pipeline": "the engine over files (batches of tensors)",
    "napari_chromagan.engine.planes": "the engine's batch step",
    "napari_chromagan.model.pretrained_trunk": "copies ImageNet tensors into the generator's trunk",
    "napari_chromagan.model.same_padding": "TensorFlow-padded convolutions, nn.Modules",
    "napari_chromagan.color.render": "the renderer, on tensors",
    "napari_chromagan.engine.upsample": "the chroma upsampling, on tensors",
    "napari_chromagan.model.vgg16": "the VGG16 layers, nn.Modules",
}

# Known violations, reported by an issue: strict, so that the entry must go once it is fixed.
TORCH_LEAKS: dict[str, str] = {}  # none left: layer_result stopped importing the engine (issue 13)


def modules_in(folder: Path) -> list[str]:
    """Dotted names of every module and package below ``folder`` (a package directory)."""
    names = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


PLUGIN = modules_in(PACKAGE)
TRAINING_MODULES = modules_in(TRAINING)
CORE = [m for m in PLUGIN if not m.startswith(GUI_PACKAGES)]

# One interpreter per group imports nothing but its preload, then forks a child per module: the
# child imports the module and reports which watched packages are in sys.modules. A fork costs
# milliseconds where a fresh interpreter importing torch costs seconds (158 s for the 115 modules
# on a 2 GHz two-core machine, 2026-12-04). The modules that may import torch (TORCH_MODULES and
# the training package) are probed in an interpreter that has torch already, so that each of them
# does not import it again; their probe cannot see torch, and no test asks it about torch.
DRIVER = """
import importlib, json, os, sys, traceback
preload, watched, modules = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
if preload:
    importlib.import_module(preload)
for module in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
            report = {"found": sorted(w for w in watched if w in sys.modules)}
        except BaseException:
            report = {"error": traceback.format_exc()}
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    print(json.dumps({"module": module, **json.loads(data)}), flush=True)
"""


def _probe_group(preload: str, modules: list[str]) -> dict[str, frozenset[str]]:
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, preload, json.dumps(WATCHED), *modules],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        cwd=ROOT,
    )
    assert out.returncode == 0, f"the import probe failed:\n{out.stderr}"
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    failed = {r["module"]: r["error"] for r in reports if "error" in r}
    assert not failed, "".join(f"importing {m} failed:\n{e}" for m, e in failed.items())
    found = {r["module"]: frozenset(r["found"]) - {preload} for r in reports}
    assert list(found) == modules, f"the probe reported {list(found)}, not {modules}"
    return found


TORCH_ALLOWED = [*TORCH_MODULES, *TRAINING_MODULES]


@pytest.fixture(scope="module")
def loaded() -> dict[str, frozenset[str]]:
    """module -> the watched packages importing it loads (torch not watched for TORCH_ALLOWED)."""
    bare = [
        m for m in PLUGIN if m not in TORCH_MODULES
    ]  # the training package is all in TORCH_ALLOWED
    with ThreadPoolExecutor(max_workers=2) as pool:
        groups = pool.map(_probe_group, ("", "torch"), (bare, TORCH_ALLOWED))
        return {m: found for group in groups for m, found in group.items()}


def test_the_module_lists_come_from_the_folders():
    # a sanity check of the discovery itself, so that an empty list cannot pass everything
    assert {
        "napari_chromagan",
        "napari_chromagan.engine.colorize",
        "napari_chromagan.cli.colorize",
    } <= set(CORE)
    assert (
        "napari_chromagan.napari._widgets.colorize" in PLUGIN
        and "napari_chromagan.napari._widgets.colorize" not in CORE
    )
    assert {"training", "training.train", "training.data"} <= set(TRAINING_MODULES)
    # every allowance names a module that exists (a stale entry would hide nothing, but mislead)
    assert set(TORCH_MODULES) | set(TORCH_LEAKS) <= set(CORE)


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_gui_and_no_training(module, loaded):
    found = loaded[module]
    assert not found & set(GUI), f"{module} imports {sorted(found & set(GUI))}"
    assert "training" not in found, f"{module} imports the training package"
    assert "napari_chromagan.napari._widgets" not in found, f"{module} imports the widgets"


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=TORCH_LEAKS[m]))
        if m in TORCH_LEAKS
        else m
        for m in CORE
        if m not in TORCH_MODULES
    ],
)
def test_module_that_does_not_compute_imports_no_torch(module, loaded):
    assert "torch" not in loaded[module], (
        f"{module} imports torch; import it inside the function that needs it"
    )


@pytest.mark.parametrize("module", TRAINING_MODULES)
def test_training_module_imports_no_gui_and_no_plugin_front_end(module, loaded):
    found = loaded[module]
    assert not found & set(GUI), f"{module} imports {sorted(found & set(GUI))}"
    # training builds on the core; the command line and the widgets build on both
    assert "napari_chromagan.cli" not in found, f"{module} imports the plugin's command line"
    assert "napari_chromagan.napari._widgets" not in found, f"{module} imports the plugin's widgets"


def test_the_package_itself_imports_neither_torch_nor_qt(loaded):
    assert loaded["napari_chromagan"] == frozenset()

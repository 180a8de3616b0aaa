"""Every name the documentation promises is importable where it says, and the public API is lazy."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import napari_chromagan

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FROM_IMPORT = re.compile(r"from (napari_chromagan(?:\.\w+)*) import (?:\(([\w\s,]+)\)|([\w ,]+))")
_DOTTED = re.compile(r"\bnapari_chromagan((?:\.\w+)+)")


def _documented() -> list[tuple[str, str, str]]:
    """(document, module, name) for each ``from napari_chromagan... import name`` and each
    dotted ``napari_chromagan.x.y`` the documents mention."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for module, wrapped, plain in _FROM_IMPORT.findall(text):
            for name in re.split(r"[\s,]+", (wrapped or plain).strip()):
                if name and name != "as":
                    found.append((doc.name, module, name))
        for dotted in _DOTTED.findall(text):
            parts = ("napari_chromagan" + dotted).split(".")
            found.append((doc.name, ".".join(parts[:-1]), parts[-1]))
    return sorted(set(found))


def _resolve(module: str, name: str) -> object:
    try:
        return getattr(importlib.import_module(module), name)
    except AttributeError:
        return importlib.import_module(f"{module}.{name}")  # a submodule


def test_the_documents_name_public_things():
    assert len(_documented()) >= 5  # the README's examples are found at all


@pytest.mark.parametrize(("doc", "module", "name"), _documented())
def test_every_documented_name_exists(doc, module, name):
    try:
        _resolve(module, name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{doc} names {module}.{name}, which does not exist: {exc}")


def test_import_keras_weights_is_public():
    from napari_chromagan import import_keras_weights, import_keras_weights_to_checkpoint
    from napari_chromagan.weights.keras_import import import_keras_weights as defined

    assert import_keras_weights is defined and callable(import_keras_weights_to_checkpoint)
    assert "import_keras_weights" in napari_chromagan.__all__ and "import_keras_weights" in dir(
        napari_chromagan
    )


@pytest.mark.parametrize("name", napari_chromagan.__all__)
def test_every_public_name_resolves(name):
    assert getattr(napari_chromagan, name) is not None


def test_importing_the_package_costs_neither_torch_nor_qt():
    code = (
        "import sys, napari_chromagan; "
        "print(sorted(m for m in ('torch', 'qtpy', 'PyQt6', 'napari', 'h5py') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_old_flat_module_paths_import_the_moved_module_with_a_deprecation_warning():
    # the modules moved into subpackages (issue 13); scripts that import the old paths keep
    # working, get the very same module object, and are told where it lives now
    import subprocess
    import sys

    code = """
import importlib, warnings
warnings.simplefilter("error")
import napari_chromagan.edit.blend as new_blend            # the new paths: no warning
from napari_chromagan.model.generator import Generator
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import napari_chromagan.blend as old_blend
    from napari_chromagan.model import Generator as OldGenerator
    from napari_chromagan.weights import resolve_weights
assert old_blend is new_blend, (old_blend, new_blend)
assert old_blend.__spec__.name == "napari_chromagan.edit.blend"
assert OldGenerator is Generator
messages = [str(w.message) for w in caught if w.category is DeprecationWarning]
assert any("napari_chromagan.blend moved to napari_chromagan.edit.blend" in m for m in messages), messages
assert any("napari_chromagan.model.Generator moved to napari_chromagan.model.generator.Generator" in m for m in messages), messages
assert any("weights.lookup.resolve_weights" in m for m in messages), messages
try:
    import napari_chromagan.no_such_module
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("an unknown name imported")
try:
    from napari_chromagan.model import no_such_name
except ImportError as exc:
    assert "no_such_name" in str(exc)
else:
    raise AssertionError("an unknown attribute resolved")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

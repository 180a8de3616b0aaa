"""Old module paths, kept importable with a DeprecationWarning until a later release removes them.

Until 2026-12 the package was flat (``napari_chromagan.blend``, ``napari_chromagan.colorize``...);
the modules now live in subpackages by concept (see docs/architecture.md). Importing an old path
warns and gives the module at its new home, the same object, so monkeypatching either name
patches both. The finder sits last on ``sys.meta_path``: it is asked only about names that no
file provides, so it costs normal imports nothing.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

PACKAGE = __name__.rpartition(".")[0]

# old module (napari_chromagan.<old>) -> its home now (napari_chromagan.<new>)
MOVED = {
    "atomic": "files.atomic",
    "blend": "edit.blend",
    "checkpoint": "weights.checkpoint",
    "classes": "engine.classes",
    "colorize": "engine.colorize",
    "colorizer_cache": "napari.colorizer_cache",
    "efficientnet": "model.efficientnet",
    "fastlab": "color.fastlab",
    "gamut": "color.gamut",
    "hint_solver": "edit.hint_solver",
    "hints": "edit.hints",
    "imageio": "files.imageio",
    "inputs": "engine.inputs",
    "keras_h5": "weights.keras_h5",
    "keras_import": "weights.keras_import",
    "layer_result": "napari.layer_result",
    "layer_transforms": "napari.layer_transforms",
    "layers": "napari.layers",
    "memory": "engine.memory",
    "normalize": "engine.normalize",
    "pipeline": "engine.pipeline",
    "planes": "engine.planes",
    "provenance": "files.provenance",
    "registry": "weights.registry",
    "render": "color.render",
    "settings": "napari.settings",
    "upsample": "engine.upsample",
    "vgg16": "model.vgg16",
}


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new home."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self.spec = module.__spec__  # the import system overwrites it with the alias's spec
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.spec  # the module keeps its own spec (reload, pickling)


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``napari_chromagan.<old>`` for the old flat module names, warning once per name."""

    def find_spec(self, fullname, path, target=None):
        parent, _, old = fullname.rpartition(".")
        if parent != PACKAGE or old not in MOVED:
            return None
        new = f"{PACKAGE}.{MOVED[old]}"
        warnings.warn(
            f"{fullname} moved to {new}; import it from there (the old path will be removed)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def old_module_getattr(package: str, home: str):
    """A PEP 562 ``__getattr__`` for a package that took the place of an old flat module.

    ``napari_chromagan.model``, ``.color`` and ``.weights`` were modules and are packages now;
    ``from napari_chromagan.model import Generator`` keeps working, with a DeprecationWarning,
    by looking the name up in the old module's new home (``model.generator``...).
    """

    def __getattr__(name: str):
        # ``from package import submodule`` asks for the attribute before importing the
        # submodule: a submodule's name must fail here, so that the import system loads it
        if name.startswith("__") or importlib.util.find_spec(f"{package}.{name}") is not None:
            raise AttributeError(name)
        module = importlib.import_module(f"{PACKAGE}.{home}")
        try:
            value = getattr(module, name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        warnings.warn(
            f"{package}.{name} moved to {PACKAGE}.{home}.{name}; import it from there "
            "(the old path will be removed)",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__


def install() -> None:
    """Put the finder last on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())

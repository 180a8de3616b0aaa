from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_S

ROOT = Path(__file__).resolve().parents[1]


def manifest():
    npe2 = pytest.importorskip("npe2")
    return npe2.PluginManifest.from_file(ROOT / "napari.yaml")


def test_manifest_is_valid_and_named_after_the_distribution():
    m = manifest()
    assert m.name == "napari-chromagan"
    from importlib.metadata import distribution

    assert distribution("napari-chromagan").metadata["Name"] == m.name


def test_every_python_name_imports():
    for command in manifest().contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.python_name


def _npe2_validate(target: str) -> subprocess.CompletedProcess[str]:
    npe2_cli = Path(sys.executable).with_name("npe2")
    command = [str(npe2_cli)] if npe2_cli.exists() else [sys.executable, "-m", "npe2"]
    return subprocess.run(
        [*command, "validate", target, "--imports"], capture_output=True, text=True, timeout=HANG_S
    )


def test_npe2_validate_passes_on_the_installed_plugin():
    pytest.importorskip("npe2")
    # the installed distribution, as napari finds it (entry point -> packaged napari.yaml), and
    # with --imports, so that every python_name is imported too
    out = _npe2_validate("napari-chromagan")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_npe2_validate_rejects_a_broken_copy(tmp_path):
    pytest.importorskip("npe2")
    broken = (
        (ROOT / "napari.yaml")
        .read_text()
        .replace("id: napari-chromagan.colorize", "id: someone-else.colorize", 1)
    )
    assert broken != (ROOT / "napari.yaml").read_text()
    (tmp_path / "napari.yaml").write_text(broken)
    out = _npe2_validate(str(tmp_path / "napari.yaml"))
    assert out.returncode != 0
    assert "must start with the current package name" in out.stdout + out.stderr


def _widget_menu_entries() -> dict[str, list[str]]:
    """widget command id -> the menu ids whose entries open it."""
    m = manifest()
    entries: dict[str, list[str]] = {w.command: [] for w in m.contributions.widgets}
    for menu_id, items in m.contributions.menus.items():
        for item in items:
            command = getattr(item, "command", None)
            if command in entries:
                entries[command].append(menu_id)
    return entries


def test_every_menu_entry_opens_a_widget_in_a_menu_napari_opens_to_plugins():
    # npe2 validate checks neither: napari silently drops entries for menus it does not open to
    # plugins, and entries naming a command that does not exist
    pytest.importorskip("napari")
    from napari._app_model.constants._menus import MenuId, is_menu_contributable

    m = manifest()
    widget_commands = {w.command for w in m.contributions.widgets}
    assert m.contributions.menus, "the manifest contributes no menu entries"
    for menu_id, items in m.contributions.menus.items():
        assert is_menu_contributable(menu_id), (
            f"{menu_id} is not one of {sorted(MenuId.contributables())}"
        )
        for item in items:
            assert getattr(item, "command", None) in widget_commands, (menu_id, item)
    # and every dock widget is reachable from napari's Layers menu, not only from Plugins
    for command, menus in _widget_menu_entries().items():
        assert any(mid.startswith("napari/layers/") for mid in menus), (
            f"{command} has no Layers menu entry"
        )


def _menu_actions(menu, menu_id: str):
    """The actions of the (sub)menu ``menu_id`` inside the Qt menu ``menu``, as a user opens it."""
    for action in menu.actions():
        sub = action.menu()
        if sub is None:
            continue
        if getattr(sub, "_menu_id", None) == menu_id:
            sub.aboutToShow.emit()  # app-model menus refresh their items when they are opened
            return list(sub.actions())
        found = _menu_actions(sub, menu_id)
        if found is not None:
            return found
    return None


def _widget_entries() -> list[tuple[str, str, str]]:
    """(command id, Layers menu id, python_name) for every menu entry of a dock widget."""
    try:
        m = manifest()
    except pytest.skip.Exception:
        return []
    names = {c.id: c.python_name for c in m.contributions.commands}
    return [
        (command, menu_id, names[command])
        for command, menus in _widget_menu_entries().items()
        for menu_id in menus
    ]


@pytest.mark.qt
@pytest.mark.parametrize(("command", "menu_id", "python_name"), _widget_entries())
def test_each_widget_opens_from_its_layers_menu_entry(
    make_napari_viewer, command, menu_id, python_name
):
    # make_napari_viewer, not the proxy: the test walks the window's Qt menus
    viewer = make_napari_viewer()
    actions = _menu_actions(viewer.window.layers_menu, menu_id)
    assert actions is not None, f"napari's Layers menu has no submenu {menu_id}"
    (entry,) = [a for a in actions if getattr(a, "_command_id", None) == command]
    assert entry.isEnabled()
    before = set(viewer.window.dock_widgets)

    entry.trigger()

    opened = set(viewer.window.dock_widgets) - before
    assert len(opened) == 1, opened
    (title,) = opened
    module, _, cls = python_name.partition(":")
    widget = viewer.window.dock_widgets[title]
    assert isinstance(widget, getattr(importlib.import_module(module), cls))
    # a second click toggles that dock instead of stacking a second widget
    entry.trigger()
    assert set(viewer.window.dock_widgets) - before == {title}


def test_the_entry_point_leads_to_the_one_manifest():
    from importlib.metadata import entry_points
    from importlib.resources import files

    (entry,) = [e for e in entry_points(group="napari.manifest") if e.name == "napari-chromagan"]
    module, _, resource = entry.value.partition(":")
    assert files(module).joinpath(resource).is_file(), entry.value
    # one file, not a copy that can drift: the packaged manifest is a link to the root one
    packaged = ROOT / "src" / "napari_chromagan" / resource
    assert packaged.is_symlink() and packaged.resolve() == (ROOT / "napari.yaml").resolve()


def test_every_command_is_contributed_somewhere():
    # a command that no widget, writer, reader, sample or menu entry names is dead weight that
    # npe2 validate accepts
    m = manifest()
    c = m.contributions
    used = {w.command for w in c.widgets or []} | {w.command for w in c.writers or []}
    used |= {r.command for r in c.readers or []} | {s.command for s in c.sample_data or []}
    used |= {getattr(item, "command", None) for items in (c.menus or {}).values() for item in items}
    commands = {command.id for command in c.commands}
    assert commands - used == set(), "commands nothing contributes"
    assert used - {None} <= commands, "contributions naming an undeclared command"


def _python_objects(kind: str) -> list[tuple[str, object]]:
    m = manifest()
    names = {c.id: c.python_name for c in m.contributions.commands}
    objects = []
    for contribution in getattr(m.contributions, kind) or []:
        module, _, attr = names[contribution.command].partition(":")
        objects.append(
            (names[contribution.command], getattr(importlib.import_module(module), attr))
        )
    assert objects, f"the manifest contributes no {kind}"
    return objects


def test_every_widget_is_a_widget_class_napari_can_give_the_viewer():
    pytest.importorskip("napari")
    import napari
    from magicgui.widgets import Widget
    from qtpy.QtWidgets import QWidget

    for python_name, obj in _python_objects("widgets"):
        assert isinstance(obj, type) and issubclass(obj, (QWidget, Widget)), python_name
        # napari passes the viewer to the one parameter annotated with its Viewer type
        # (the widget modules import napari for their annotations only when type checking)
        hints = typing.get_type_hints(obj.__init__, localns={"napari": napari})
        params = list(inspect.signature(obj.__init__).parameters.values())[1:]
        required = [p for p in params if p.default is inspect.Parameter.empty]
        assert [hints.get(p.name) for p in required] == [napari.viewer.Viewer], python_name


def test_every_writer_takes_napari_single_layer_arguments():
    for python_name, obj in _python_objects("writers"):
        # napari calls a single-layer writer as writer(path, data, meta) and expects a list of paths
        params = list(inspect.signature(obj).parameters)
        assert len(params) == 3, (python_name, params)
        assert typing.get_type_hints(obj)["return"] == list[str], python_name


def test_every_sample_gives_layer_data_napari_can_add():
    pytest.importorskip("napari")
    from napari.layers import NAMES

    for python_name, obj in _python_objects("sample_data"):
        layers = obj()
        assert isinstance(layers, list) and layers, python_name
        for data, meta, kind in layers:
            assert kind in NAMES, (python_name, kind)
            assert isinstance(data, np.ndarray) and data.size > 0, python_name
            assert isinstance(meta, dict) and meta.get("name"), python_name


def test_sample_data_layers():
    from napari_chromagan.napari._sample_data import camera_gray, coffee_gray_and_color

    ((camera, meta, kind),) = camera_gray()
    assert meta["name"] == "camera"
    assert camera.shape == (512, 512) and camera.dtype == np.uint8 and kind == "image"
    original, gray = coffee_gray_and_color()
    assert original[0].ndim == 3 and original[1]["rgb"] is True
    assert gray[0].shape == original[0].shape[:2]
    # the gray layer is the original's luminance
    from skimage.color import rgb2gray

    assert np.abs(gray[0].astype(float) - rgb2gray(original[0]) * 255).max() <= 0.5

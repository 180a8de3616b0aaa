"""The distribution ships every package: setup.cfg lists them one by one, so a new one must be added."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setup_cfg_lists_every_package_with_an_init():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    listed = set(config["options"]["packages"].split())
    on_disk = {"training"}
    src = ROOT / "src"
    for init in (src / "napari_chromagan").rglob("__init__.py"):
        on_disk.add(".".join(init.parent.relative_to(src).parts))
    assert {"napari_chromagan", "napari_chromagan._widgets", "napari_chromagan.cli"} <= on_disk
    assert listed == on_disk, f"add the missing packages to setup.cfg [options] packages: {on_disk - listed}"

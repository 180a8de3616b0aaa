"""Settings remembered from one napari launch to the next, as a small JSON file.

The file is ``platformdirs.user_config_dir("napari-chromagan")/settings.json``, or
``$NAPARI_CHROMAGAN_SETTINGS`` when that variable is set. Each widget keeps its own section.
A damaged or unreadable file is ignored (with a log message): settings are a convenience, never a
reason for a widget not to open. Writes are atomic. No Qt here.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from napari_chromagan.files.atomic import atomic_write_text

__all__ = ["SETTINGS_ENV", "load_settings", "save_settings", "settings_path"]

log = logging.getLogger(__name__)

SETTINGS_ENV = "NAPARI_CHROMAGAN_SETTINGS"


def settings_path() -> Path:
    explicit = os.environ.get(SETTINGS_ENV)
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("napari-chromagan", appauthor=False)) / "settings.json"


def _read_all(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable napari-chromagan settings %s: %s", path, exc)
        return {}
    return values if isinstance(values, dict) else {}


def load_settings(section: str) -> dict[str, Any]:
    """The saved values of ``section`` ({} when none were saved)."""
    values = _read_all(settings_path()).get(section)
    return dict(values) if isinstance(values, dict) else {}


def save_settings(section: str, values: dict[str, Any]) -> None:
    """Replace ``section`` with ``values`` (JSON-serialisable), keeping the other sections."""
    path = settings_path()
    everything = _read_all(path)
    everything[section] = values
    text = json.dumps(everything, indent=2, sort_keys=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as exc:  # a read-only home must not break the widget
        log.warning("could not save napari-chromagan settings to %s: %s", path, exc)

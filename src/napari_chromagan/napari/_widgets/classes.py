"""The Class distribution dock widget: the most likely ImageNet classes of a colourised layer.

It reads the class probabilities that Colorize stored on the layer (never re-running the network)
and shows the top k of the plane under the dims slider as horizontal bars. It follows layers being
added, removed, renamed or re-colourised, the dims slider and k. The names and the CSV come from
:mod:`napari_chromagan.engine.classes`; only Qt lives here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_chromagan.engine.classes import ClassRow, to_csv, top_k
from napari_chromagan.napari._widgets._common import colorized_layers, plane_index
from napari_chromagan.napari._widgets._layer_watch import LayerWatcher
from napari_chromagan.napari.layer_result import LayerResult, get_layer_result, is_colorized
from napari_chromagan.napari.settings import load_settings, save_settings

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["ClassDistributionWidget"]

log = logging.getLogger(__name__)

SETTINGS_SECTION = "class_distribution"
NO_LAYER = "No colourised layer: run Colorize on an image layer first."
UNTRAINED = "These weights' class head was not trained; class distribution not available."
SKIPPED = "The class head was skipped for this result: no class distribution was computed."
UNKNOWN_TRAINING = "The weights do not say whether their class head was trained."
_BAR_STEPS = 10000  # bar resolution: 0.01 %


class _ClassBars(QWidget):
    """k rows of (class name, bar with the percentage)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setColumnStretch(1, 1)
        self.names: list[QLabel] = []
        self.bars: list[QProgressBar] = []

    def set_rows(self, rows: list[ClassRow]) -> None:
        while len(self.bars) < len(rows):
            name, bar = QLabel(), QProgressBar()
            bar.setRange(0, _BAR_STEPS)
            bar.setTextVisible(True)
            bar.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self._grid.addWidget(name, len(self.bars), 0)
            self._grid.addWidget(bar, len(self.bars), 1)
            self.names.append(name)
            self.bars.append(bar)
        for i, (name, bar) in enumerate(zip(self.names, self.bars, strict=True)):
            visible = i < len(rows)
            name.setVisible(visible)
            bar.setVisible(visible)
            if visible:
                index, label, probability = rows[i]
                name.setText(label)
                name.setToolTip(f"ImageNet class {index}")
                bar.setValue(round(probability * _BAR_STEPS))
                bar.setFormat(f"{100 * probability:.1f} %")

    def shown(self) -> list[tuple[str, str]]:
        """(name, bar text) of the visible rows, top first."""
        return [
            (n.text(), b.text())
            for n, b in zip(self.names, self.bars, strict=True)
            if not b.isHidden()
        ]


class ClassDistributionWidget(LayerWatcher, QWidget):
    """Top-k ImageNet classes of the plane under the dims slider, for a colourised layer.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose colourised layers are offered.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._layers: list[Any] = []
        self._rows: list[ClassRow] = []

        self._layer_box = QComboBox()
        self._k = QSpinBox()
        self._k.setRange(1, 50)
        self._k.setValue(_saved_k())
        self._plane = QLabel()
        self._message = QLabel()
        self._message.setWordWrap(True)
        self._bars = _ClassBars()
        self._copy = QPushButton("Copy CSV")
        self._copy.setToolTip("Copy the table (rank, index, class, probability) to the clipboard")

        form = QFormLayout()
        form.addRow("Layer", self._layer_box)
        form.addRow("Top k", self._k)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self._plane)
        layout.addWidget(self._message)
        layout.addWidget(self._bars)
        layout.addWidget(self._copy)
        layout.addStretch(1)

        self._layer_box.currentIndexChanged.connect(self._update)
        self._k.valueChanged.connect(self._on_k_changed)
        self._copy.clicked.connect(self.copy_csv)
        viewer.dims.events.current_step.connect(self._update)
        self._watch_viewer(viewer)
        self._refresh_layers()

    # ------------------------------------------------------------------ public

    @property
    def layer(self) -> Any | None:
        """The chosen colourised layer (None when there is none)."""
        i = self._layer_box.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    @layer.setter
    def layer(self, layer: Any) -> None:
        for i, candidate in enumerate(self._layers):
            if candidate is layer:
                self._layer_box.setCurrentIndex(i)
                return
        raise ValueError(
            f"{getattr(layer, 'name', layer)!r} is not a colourised layer of this viewer"
        )

    @property
    def k(self) -> int:
        return self._k.value()

    @k.setter
    def k(self, value: int) -> None:
        self._k.setValue(int(value))

    def rows(self) -> list[ClassRow]:
        """What the bars show now: (class index, name, probability), most likely first."""
        return list(self._rows)

    def message(self) -> str:
        """The message shown instead of (or above) the bars; "" when there is none."""
        return self._message.text() if not self._message.isHidden() else ""

    def copy_csv(self, _checked: bool = False) -> str:
        """Put the shown rows on the clipboard as CSV (see :func:`~napari_chromagan.engine.classes.to_csv`)."""
        text = to_csv(self._rows)
        QApplication.clipboard().setText(text)
        return text

    def _on_k_changed(self, value: int) -> None:
        save_settings(SETTINGS_SECTION, {"k": int(value)})
        self._update()

    # ------------------------------------------------------------------ layers

    def _on_layer_changed(self, event: Any = None) -> None:
        source = getattr(event, "source", None)
        if source is not None and (
            is_colorized(source) != any(source is la for la in self._layers)
        ):
            self._refresh_layers()  # became colourised, or lost its result
        elif source is None or source is self.layer:
            self._update()

    def _refresh_layers(self, _event: Any = None) -> None:
        current = self.layer
        layers = colorized_layers(self._viewer)
        self._layer_box.blockSignals(True)
        try:
            self._layer_box.clear()
            self._layer_box.addItems([layer.name for layer in layers])
            self._layers = layers
            keep = next((i for i, layer in enumerate(layers) if layer is current), None)
            if keep is not None:
                self._layer_box.setCurrentIndex(keep)
            elif layers:  # the newest colourised layer is the likeliest wanted
                self._layer_box.setCurrentIndex(len(layers) - 1)
        finally:
            self._layer_box.blockSignals(False)
        self._update()

    # ------------------------------------------------------------------ display

    def _show(self, rows: list[ClassRow], message: str = "", plane: str = "") -> None:
        self._rows = rows
        self._bars.set_rows(rows)
        self._message.setText(message)
        self._message.setVisible(bool(message))
        self._plane.setText(plane)
        self._plane.setVisible(bool(plane))
        self._copy.setEnabled(bool(rows))

    def _update(self, _event: Any = None) -> None:
        layer = self.layer
        if layer is None:
            self._show([], NO_LAYER)
            return
        try:
            result = get_layer_result(layer)
        except ValueError as exc:
            self._show([], str(exc))
            return
        if result.class_head_trained is False:
            self._show([], UNTRAINED)
            return
        if result.class_probs is None:
            self._show([], SKIPPED)
            return
        index = plane_index(self._viewer, layer, result.stack_shape)
        rows = top_k(result.class_probs[index], self.k)
        note = UNKNOWN_TRAINING if result.class_head_trained is None else ""
        self._show(rows, note, _plane_text(result, index))


def _saved_k() -> int:
    k = load_settings(SETTINGS_SECTION).get("k", 5)
    return k if isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 50 else 5


def _plane_text(result: LayerResult, index: tuple[int, ...]) -> str:
    if result.plane is not None:
        return f"plane {result.plane} (colourised alone)"
    if not index:
        return ""
    return "plane " + ", ".join(str(i) for i in index)

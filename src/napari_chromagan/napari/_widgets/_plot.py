"""A small live line plot for the Fine-tune widget, painted with QPainter (no plotting library).

Two panels stacked: the training losses (each series scaled to its own range, the legend gives
the last value), and the validation PSNR in dB beside its no-colour floor.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["LivePlot"]

_COLOURS = {
    "loss_g": "#e6a23c",
    "mse": "#4fc1ff",
    "loss_d": "#c678dd",
    "val_psnr": "#98c379",
    "val_psnr_floor": "#888888",
}
_TOP = ("loss_g", "mse", "loss_d")
_BOTTOM = ("val_psnr", "val_psnr_floor")


class LivePlot(QWidget):
    """Series of (step, value) points, repainted as they grow.

    ``series`` maps a name (``loss_g``, ``mse``, ``loss_d``, ``val_psnr``, ``val_psnr_floor``) to
    its points; :meth:`add_row` takes a metrics.jsonl row.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, list[tuple[float, float]]] = {name: [] for name in (*_TOP, *_BOTTOM)}
        self.setMinimumHeight(160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def clear(self) -> None:
        for points in self.series.values():
            points.clear()
        self.update()

    def add_row(self, row: dict) -> None:
        """Append the row's values (a repeated step replaces the old point: a resumed run)."""
        step = float(row["step"])
        for name, points in self.series.items():
            value = row.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                while points and points[-1][0] >= step:
                    points.pop()
                points.append((step, float(value)))
        self.update()

    def paintEvent(self, _event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#262930"))
        font = QFont(painter.font())
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        w, h = self.width(), self.height()
        steps = [s for points in self.series.values() for s, _ in points]
        x0, x1 = (min(steps), max(steps)) if steps else (0.0, 1.0)
        if x1 <= x0:
            x1 = x0 + 1.0
        half = h / 2
        self._panel(painter, QRectF(4, 4, w - 8, half - 8), _TOP, x0, x1, shared=False, unit="")
        self._panel(
            painter, QRectF(4, half + 4, w - 8, half - 8), _BOTTOM, x0, x1, shared=True, unit=" dB"
        )
        painter.end()

    def _panel(
        self,
        painter: QPainter,
        rect: QRectF,
        names: tuple[str, ...],
        x0: float,
        x1: float,
        shared: bool,
        unit: str,
    ) -> None:
        painter.setPen(QPen(QColor("#555555")))
        painter.drawRect(rect)
        inner = rect.adjusted(2, 14, -2, -2)
        values = [v for n in names for _, v in self.series[n]]
        if shared and values:
            lo, hi = min(values), max(values)
        legend_x = rect.left() + 4
        for name in names:
            points = self.series[name]
            colour = QColor(_COLOURS[name])
            painter.setPen(QPen(colour))
            label = name + (f" {points[-1][1]:.4g}{unit}" if points else "")
            painter.drawText(QPointF(legend_x, rect.top() + 11), label)
            legend_x += painter.fontMetrics().horizontalAdvance(label) + 10
            if not points:
                continue
            if not shared:
                lo, hi = min(v for _, v in points), max(v for _, v in points)
            span = hi - lo if hi > lo else 1.0
            polygon = QPolygonF(
                [
                    QPointF(
                        inner.left() + (s - x0) / (x1 - x0) * inner.width(),
                        inner.bottom() - (v - lo) / span * inner.height(),
                    )
                    for s, v in points
                ]
            )
            pen = QPen(colour, 1.5)
            if name.endswith("_floor"):
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            if len(points) == 1:
                painter.drawEllipse(polygon[0], 2.0, 2.0)
            else:
                painter.drawPolyline(polygon)

"""A small line plot for the sidebar (deletion/insertion and randomisation curves).

Drawn with QPainter: a dozen points per curve do not justify a plotting dependency
(matplotlib would add ~40 MB and its own Qt backend to a napari session).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["CurvePlot"]


class CurvePlot(QWidget):
    """Curves on a fixed y range with a title, axis labels and a legend.

    ``set_series([(label, xs, ys, colour), ...])``; ``xs`` may be numbers or, for a
    categorical axis (randomisation stages), ``None`` (points evenly spaced).
    """

    def __init__(
        self,
        title: str,
        *,
        x_label: str = "",
        y_range: tuple[float, float] = (0.0, 1.0),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.title = title
        self.x_label = x_label
        self.y_range = y_range
        self.series: list[tuple[str, Sequence[float] | None, Sequence[float], str]] = []
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(260, 130)

    def set_series(self, series: list[tuple[str, Sequence[float] | None, Sequence[float], str]]) -> None:
        self.series = list(series)
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        text = self.palette().windowText().color()
        left, right, top, bottom = 34, 8, 18, 22
        frame = QRectF(left, top, max(10, w - left - right), max(10, h - top - bottom))
        p.setPen(QPen(text))
        p.drawText(QRectF(0, 0, w, top), Qt.AlignmentFlag.AlignCenter, self.title)
        p.drawText(
            QRectF(left, h - bottom + 4, frame.width(), bottom - 4),
            Qt.AlignmentFlag.AlignCenter,
            self.x_label,
        )
        lo, hi = self.y_range
        for v in (lo, (lo + hi) / 2, hi):
            y = frame.bottom() - (v - lo) / (hi - lo) * frame.height()
            p.drawText(QRectF(0, y - 7, left - 4, 14), Qt.AlignmentFlag.AlignRight, f"{v:g}")
        grid = QColor(text)
        grid.setAlpha(60)
        p.setPen(QPen(grid))
        p.drawRect(frame)
        if not self.series:
            p.setPen(QPen(text))
            p.drawText(frame, Qt.AlignmentFlag.AlignCenter, "not computed")
            return
        for i, (label, xs, ys, colour) in enumerate(self.series):
            n = len(ys)
            if n == 0:
                continue
            if xs is None:
                xs = [k / max(1, n - 1) for k in range(n)]
            x0, x1 = min(xs), max(xs)
            span = (x1 - x0) or 1.0
            pts = [
                QPointF(
                    frame.left() + (x - x0) / span * frame.width(),
                    frame.bottom() - (min(max(y, lo), hi) - lo) / (hi - lo) * frame.height(),
                )
                for x, y in zip(xs, ys, strict=True)
            ]
            pen = QPen(QColor(colour))
            pen.setWidthF(2.0)
            p.setPen(pen)
            for a, b in itertools.pairwise(pts):
                p.drawLine(a, b)
            for pt in pts:
                p.drawEllipse(pt, 1.5, 1.5)
            p.drawText(
                QRectF(frame.left() + 4, frame.top() + 2 + 13 * i, frame.width() - 8, 14),
                Qt.AlignmentFlag.AlignRight,
                label,
            )
        p.end()

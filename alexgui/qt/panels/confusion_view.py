"""The confusion matrix as a heatmap: counts in the cells, class names on both axes, "true X, predicted Y:
n images" on hover, a click selects a cell (cellClicked). Painted by hand (one QPainter pass), so 100
classes are 10,000 rectangles and stay quick; the cell size follows a zoom factor (Ctrl+wheel, or the
panel's slider) and the widget sits in a scroll area when the matrix is larger than the view."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QMouseEvent, QPainter, QPaintEvent, QWheelEvent
from PySide6.QtWidgets import QToolTip, QWidget

MIN_CELL, MAX_CELL = 6, 64
_LABEL_MAX = 140  # pixels for the class names on each axis


class ConfusionView(QWidget):
    cellClicked = Signal(int, int)  # row (true class) and column (prediction), positions in `names`
    cellSizeChanged = Signal(int)  # pixels, after Ctrl+wheel

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.names: list[str] = []
        self.matrix = np.zeros((0, 0), np.int64)
        self.cell = 36
        self.selected: tuple[int, int] | None = None
        self._label_px = 40

    def set_matrix(self, names: list[str], matrix: np.ndarray) -> None:
        self.names, self.matrix, self.selected = list(names), np.asarray(matrix), None
        metrics = QFontMetrics(self.font())
        self._label_px = min(_LABEL_MAX, max([metrics.horizontalAdvance(n) for n in names] + [20]) + 10)
        self.cell = int(np.clip(360 // max(len(names), 1), MIN_CELL, 44))  # 10 classes: 36 px; 100: 6 px
        self._resize()

    def set_cell(self, px: int) -> None:
        self.cell = int(np.clip(px, MIN_CELL, MAX_CELL))
        self._resize()

    def _resize(self) -> None:
        self.setFixedSize(self.sizeHint())
        self.update()

    def sizeHint(self) -> QSize:
        side = self._label_px + 18 + self.cell * len(self.names)
        return QSize(side + 4, side + 4)

    def cell_rect(self, row: int, col: int) -> QRect:
        origin = self._label_px + 18
        return QRect(origin + col * self.cell, origin + row * self.cell, self.cell, self.cell)

    def cell_at(self, pos: QPoint) -> tuple[int, int] | None:
        origin = self._label_px + 18
        n = len(self.names)
        col, row = (pos.x() - origin) // max(self.cell, 1), (pos.y() - origin) // max(self.cell, 1)
        if pos.x() < origin or pos.y() < origin or not (0 <= row < n and 0 <= col < n):
            return None
        return int(row), int(col)

    def describe(self, row: int, col: int) -> str:
        count = int(self.matrix[row, col])
        return f"true {self.names[row]}, predicted {self.names[col]}: {count} image{'s' if count != 1 else ''}"

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        n = len(self.names)
        if n == 0:
            painter.end()
            return
        origin = self._label_px + 18
        show_counts = self.cell >= 18
        gap = 1 if self.cell >= 10 else 0  # at 100 classes a 1-pixel grid would be a sixth of every cell
        painter.fillRect(QRect(origin, origin, n * self.cell, n * self.cell), QColor(38, 42, 48))
        # Only the cells the repaint asks for: at hundreds of classes a scroll repaints a strip, not the matrix.
        area = event.rect()
        rows = range(max(0, (area.top() - origin) // self.cell), min(n, (area.bottom() - origin) // self.cell + 1))
        cols = range(max(0, (area.left() - origin) // self.cell), min(n, (area.right() - origin) // self.cell + 1))
        for r in rows:
            row_total = max(int(self.matrix[r].sum()), 1)
            for c in cols:
                count = int(self.matrix[r, c])
                # Shade by the share of the true class's images: a class with few images shows its
                # mistakes as clearly as a large one. Diagonal blue, errors orange.
                share = count / row_total
                base = QColor(40, 110, 200) if r == c else QColor(230, 120, 30)
                colour = QColor(38, 42, 48) if count == 0 else QColor(
                    int(38 + (base.red() - 38) * (0.25 + 0.75 * share)),
                    int(42 + (base.green() - 42) * (0.25 + 0.75 * share)),
                    int(48 + (base.blue() - 48) * (0.25 + 0.75 * share)))  # fmt: skip
                rect = self.cell_rect(r, c)
                if count or gap:  # without a grid, empty cells are the background already
                    painter.fillRect(rect.adjusted(0, 0, -gap, -gap), colour)
                if show_counts and count:
                    painter.setPen(QColor(250, 250, 250))
                    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, str(count))
        if self.selected is not None:
            painter.setPen(QColor(255, 255, 255))
            painter.drawRect(self.cell_rect(*self.selected).adjusted(0, 0, -1, -1))
        painter.setPen(self.palette().text().color())
        metrics = QFontMetrics(self.font())
        if self.cell >= metrics.height() - 4:  # names only where a row has room for them
            for i, name in enumerate(self.names):
                text = metrics.elidedText(name, Qt.TextElideMode.ElideRight, self._label_px - 6)
                y = origin + i * self.cell
                painter.drawText(QRect(18, y, self._label_px - 4, self.cell),  # right of "true class"
                                 Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, text)
                painter.save()
                painter.translate(origin + i * self.cell, origin - 4)
                painter.rotate(-90)
                painter.drawText(QRect(0, 0, self._label_px - 4, self.cell),
                                 Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
                painter.restore()
        painter.drawText(QRect(origin, 0, n * self.cell, 16), Qt.AlignmentFlag.AlignCenter, "predicted →")
        painter.save()
        painter.translate(0, origin + n * self.cell)
        painter.rotate(-90)
        painter.drawText(QRect(0, 0, n * self.cell, 16), Qt.AlignmentFlag.AlignCenter, "true class →")
        painter.restore()
        painter.end()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        cell = self.cell_at(event.position().toPoint())
        if cell is None:
            QToolTip.hideText()
            self.setToolTip("")
        else:
            text = self.describe(*cell)
            self.setToolTip(text)
            QToolTip.showText(event.globalPosition().toPoint(), text, self)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        cell = self.cell_at(event.position().toPoint())
        if cell is not None and event.button() == Qt.MouseButton.LeftButton:
            self.selected = cell
            self.update()
            self.cellClicked.emit(*cell)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.set_cell(self.cell + (2 if event.angleDelta().y() > 0 else -2))
            self.cellSizeChanged.emit(self.cell)
            event.accept()
        else:
            event.ignore()  # the scroll area scrolls

"""Tiles drawn as one picture: the grid the Filters and Feature maps panels show, and a tile enlarged.

`TileGrid` draws N small images (kernels, activation maps) as a single QImage, so hundreds of tiles
cost one paint; hovering names a tile (a tooltip function the panel gives), a click reports it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QSize, Qt, Signal
from PySide6.QtGui import QImage, QMouseEvent, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QDialog, QLabel, QToolTip, QVBoxLayout, QWidget

from alexgui.engine.understand import kernels as F

TooltipFn = Callable[[int, float, float], str]  # (tile index, x, y within the tile in 0..1) -> text


def numpy_to_qimage(rgb: np.ndarray) -> QImage:
    """(H, W, 3) uint8 -> a QImage that owns a copy of the pixels."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class TileGrid(QWidget):
    """A grid of small images drawn as one picture; hover names a tile, click reports it."""

    tileClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self._image = QImage()
        self._layout: F.GridLayout | None = None
        self._tooltip: TooltipFn = lambda i, x, y: ""
        self.count = 0

    def set_tiles(self, tiles: np.ndarray, tile_px: int, cols: int, tooltip: TooltipFn) -> None:
        """tiles: (N, h, w, 3) or (N, h, w) uint8."""
        self.count = len(tiles)
        self._layout = F.grid_layout(len(tiles), None, tile_px, cols=cols, gap=2)
        self._image = numpy_to_qimage(F.render_grid(tiles, self._layout, background=(45, 45, 48)))
        self._tooltip = tooltip
        self.setFixedSize(self._image.size())
        self.update()

    def image(self) -> QImage:
        """The grid as drawn (a null image when empty)."""
        return QImage(self._image)

    def clear(self) -> None:
        self.count = 0
        self._layout = None
        self._image = QImage()
        self.setFixedSize(0, 0)
        self.update()

    def tile_position(self, index: int) -> QPointF:
        """Centre of a tile in widget coordinates (tests click and hover there)."""
        assert self._layout is not None
        x, y = self._layout.positions[index]
        half = self._layout.tile / 2
        return QPointF(x + half, y + half)

    def tile_at(self, pos: QPointF) -> int | None:
        if self._layout is None:
            return None
        return self._layout.tile_at(pos.x(), pos.y())

    def tooltip_at(self, pos: QPointF) -> str:
        i = self.tile_at(pos)
        if i is None or self._layout is None:
            return ""
        x0, y0 = self._layout.positions[i]
        return self._tooltip(i, (pos.x() - x0) / self._layout.tile, (pos.y() - y0) / self._layout.tile)

    def sizeHint(self) -> QSize:
        return self._image.size()

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._image.isNull():
            return
        painter = QPainter(self)
        painter.drawImage(0, 0, self._image)
        painter.end()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        text = self.tooltip_at(event.position())
        if text:
            QToolTip.showText(event.globalPosition().toPoint(), text, self)
        else:
            QToolTip.hideText()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        i = self.tile_at(event.position())
        if i is not None and event.button() == Qt.MouseButton.LeftButton:
            self.tileClicked.emit(i)


class TileViewer(QDialog):
    """One tile enlarged, with what it is."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Kernel")
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture)
        layout.addWidget(self.caption)

    def show_tile(self, tile: np.ndarray, caption: str, side: int = 264) -> None:
        if tile.ndim == 2:
            tile = np.repeat(tile[..., None], 3, axis=2)
        big = F.render_grid(tile[None], F.grid_layout(1, None, side))
        self.picture.setPixmap(QPixmap.fromImage(numpy_to_qimage(big)))
        self.caption.setText(caption)
        self.show()
        self.raise_()

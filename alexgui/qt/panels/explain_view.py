"""The pictures of the Explain panel: an image that scales to its room and opens larger on click, the
colour scale, and the larger view itself.

Kept apart from the panel (explain.py) so that the panel is about the work and this is about drawing.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QLinearGradient, QMouseEvent, QPainter, QPaintEvent, QPixmap, QResizeEvent
from PySide6.QtWidgets import QDialog, QLabel, QSizePolicy, QVBoxLayout, QWidget

from alexgui.engine.understand.explain_files import colormap_lut
from alexgui.qt.tile_grid import numpy_to_qimage

MIN_SIDE = 160  # the smallest the two images get (a 1280x800 screen gives them about 300)


class ScaledImage(QLabel):
    """An RGB array drawn as large as the label allows, square pixels, smooth; a click emits `clicked`."""

    clicked = Signal()

    def __init__(self, tooltip: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(MIN_SIDE, MIN_SIDE)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip(tooltip)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_array(self, rgb: np.ndarray | None) -> None:
        self._pixmap = None if rgb is None else QPixmap.fromImage(numpy_to_qimage(rgb))
        self._rescale()

    def has_image(self) -> bool:
        return self._pixmap is not None

    def sizeHint(self) -> QSize:
        return QSize(320, 320)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._pixmap is not None:
            self.clicked.emit()
        super().mousePressEvent(event)

    def _rescale(self) -> None:
        if self._pixmap is None:
            self.clear()
            return
        self.setPixmap(self._pixmap.scaled(max(1, self.width()), max(1, self.height()), Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))


class ColourScale(QWidget):
    """The colour map from low to high, with the words at its ends; what the colours mean is in `unit`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.unit = ""
        self.setMinimumHeight(36)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_unit(self, text: str) -> None:
        self.unit = text
        self.setToolTip(text)
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(300, 36)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        metrics = painter.fontMetrics()
        low_w, high_w = metrics.horizontalAdvance("low "), metrics.horizontalAdvance(" high")
        ramp_w = max(40, min(220, self.width() - low_w - high_w - 8))
        left = low_w
        gradient = QLinearGradient(left, 0, left + ramp_w, 0)
        for i, (r, g, b) in enumerate(colormap_lut()[::32]):
            gradient.setColorAt(i / 7, QColor(int(r), int(g), int(b)))
        painter.fillRect(left, 4, ramp_w, 10, gradient)
        text = self.palette().windowText().color()
        painter.setPen(text)
        painter.drawText(0, 14, "low")
        painter.drawText(left + ramp_w + 4, 14, "high")
        if self.unit:
            painter.drawText(0, 18 + metrics.height(), metrics.elidedText(self.unit, Qt.TextElideMode.ElideRight, self.width()))
        painter.end()


class LargerView(QDialog):
    """The saved figure (original | overlay, caption, scale) at twice the crop's size, or as large as
    the screen allows."""

    def __init__(self, figure: np.ndarray, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        image = ScaledImage()
        image.setCursor(Qt.CursorShape.ArrowCursor)
        image.set_array(figure)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(image)
        h, w = figure.shape[:2]
        screen = parent.screen().availableGeometry().size() if parent is not None and parent.screen() else QSize(1280, 800)
        scale = min(2.0, 0.9 * screen.width() / w, 0.85 * screen.height() / h)
        self.resize(int(w * scale) + 8, int(h * scale) + 8)

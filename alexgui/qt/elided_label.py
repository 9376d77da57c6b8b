"""A one-line label that never widens its window: it shows as much of its text as fits, ending in
"…", and the whole text on hover.

A plain QLabel without word wrap asks for the width of its whole text as its minimum: a long device
name, a path or a message in one of them widened the status bar, the dock holding it, and so the
window (past 1280 pixels). This label asks for a few characters' width only.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QLabel, QWidget

MIN_CHARS = 8  # the least it asks for: enough to tell what the label is about


class ElidedLabel(QLabel):
    """Plain text only; setText as usual. `full_text()` is the text, `text()` what is shown is the same
    string (the eliding happens when painting), so tests and code read the whole text."""

    def __init__(self, text: str = "", parent: QWidget | None = None,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight) -> None:
        super().__init__(text, parent)
        self._mode = mode
        self._hint = ""  # a tooltip set by the owner, shown when the text is not cut
        self.setTextFormat(Qt.TextFormat.PlainText)
        self._sync_tooltip()

    def setText(self, text: str) -> None:
        super().setText(text)
        self._sync_tooltip()

    def setToolTip(self, tip: str) -> None:
        self._hint = tip
        self._sync_tooltip()

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        least = self.fontMetrics().horizontalAdvance("x" * MIN_CHARS)
        return QSize(min(hint.width(), least), hint.height())

    def is_elided(self) -> bool:
        """Whether the text is cut at the current width (the tooltip then tells the rest)."""
        return self.fontMetrics().horizontalAdvance(self.text()) > self.contentsRect().width()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), self._mode, rect.width())
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(rect, int(self.alignment()), shown)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._sync_tooltip()

    def _sync_tooltip(self) -> None:
        # The whole text on hover when it is cut; otherwise the owner's tooltip, if any.
        cut = bool(self.text()) and self.is_elided()
        tip = self.text() + (f"\n{self._hint}" if self._hint else "") if cut else self._hint
        super().setToolTip(tip)

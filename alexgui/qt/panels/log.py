"""The event log: what happened in a run, in words (pre-flight, checkpoints, schedule drops, errors).
The words are engine/training/narrative.py's, the same as `alexgui train` prints."""

from __future__ import annotations

import html
import time
from collections.abc import Callable

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QToolButton, QVBoxLayout, QWidget

from alexgui.engine.events import Event
from alexgui.engine.training.narrative import describe_event

LEVEL_COLORS = {"info": "#c9d1d9", "good": "#7ee2a8", "warn": "#f0c674", "error": "#ff7b72", "muted": "#8b949e"}


class LogPanel(QWidget):
    """A read-only, bounded log; each line has a time and, when several runs are open, the run's name."""

    def __init__(self, parent: QWidget | None = None, max_lines: int = 5000) -> None:
        super().__init__(parent)
        self.view = QPlainTextEdit()
        self.view.setObjectName("logView")
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(max_lines)
        self.view.setUndoRedoEnabled(False)
        font: QFont = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(font.pointSizeF(), 9.0))
        self.view.setFont(font)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        # One offer at a time above the lines (Training ended: [Evaluate this run]), until taken or closed.
        self.offer_bar = QWidget()
        self.offer_text = QLabel()
        self.offer_button = QPushButton()
        self.offer_button.clicked.connect(self._take_offer)
        close = QToolButton()
        close.setText("×")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.offer_bar.hide)
        bar = QHBoxLayout(self.offer_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.offer_text)
        bar.addWidget(self.offer_button)
        bar.addStretch(1)
        bar.addWidget(close)
        self.offer_bar.hide()
        self._offer: Callable[[], None] | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(self.offer_bar)
        layout.addWidget(self.view, 1)

    def offer(self, text: str, button: str, action: Callable[[], None]) -> None:
        """A one-click next step above the log, e.g. "Training of run-3 ended. [Evaluate this run]"."""
        self.add_message(text + f" ({button}: above the log)", "good")
        self.offer_text.setText(text)
        self.offer_button.setText(button)
        self._offer = action
        self.offer_bar.show()

    def _take_offer(self) -> None:
        action, self._offer = self._offer, None
        self.offer_bar.hide()
        if action is not None:
            action()

    def _context_menu(self, pos: QPoint) -> None:
        menu = self.view.createStandardContextMenu()
        menu.addSeparator()
        menu.addAction("Clear log", self.view.clear)  # the run folders keep everything
        menu.exec(self.view.mapToGlobal(pos))
        menu.deleteLater()

    def add_events(self, events: list[Event], run_name: str = "") -> None:
        for ev in events:
            for level, text in describe_event(ev):
                self.add_message(text, level, run_name, ev.time)

    def add_message(self, text: str, level: str = "info", run_name: str = "", when: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(when))
        color = LEVEL_COLORS.get(level, LEVEL_COLORS["info"])
        prefix = f"<span style='color:{LEVEL_COLORS['muted']}'>{stamp}</span>&nbsp;&nbsp;"
        if run_name:
            prefix += f"<span style='color:{LEVEL_COLORS['muted']}'>[{html.escape(run_name)}]</span>&nbsp;"
        body = html.escape(text).replace("  ", "&nbsp;&nbsp;")
        self.view.appendHtml(f"{prefix}<span style='color:{color}'>{body}</span>")

    def text(self) -> str:
        return self.view.toPlainText()

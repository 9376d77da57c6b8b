"""Panels in windows of their own: the Experiments panel (Train > Experiments…), the Evaluation panel.

Its form, curves and report need more room than a side dock has beside the training curves at
1280x800 (in the dock they were cut at every size), so it opens beside the main window at up to
EXPERIMENTS_SIZE, never larger than the screen. Closing it only hides it (Qt's default for a window
that is not deleted on close): an experiment keeps
running, and the main window closing stops it (Explorer.shutdown).
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QMainWindow, QWidget

from alexgui.qt.panels.experiments import ExperimentsPanel
from alexgui.qt.window_fit import place_default

EXPERIMENTS_SIZE = QSize(1180, 760)


class PanelWindow(QMainWindow):
    """A panel in a window of its own (Experiments, Evaluation). A QMainWindow (always a window of its own,
    even with a parent) so that it takes the app's theme as the main window does."""

    def __init__(self, panel: QWidget, title: str, name: str, size: QSize, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setWindowTitle(f"{title} — alexgui")
        self.panel = panel
        self.default_size = size
        self.setCentralWidget(panel)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Close), self, activated=self.close)
        self._placed = False

    def show_window(self) -> None:
        """Show (first time at its default size on the main window's screen), raise and focus it."""
        if not self._placed:
            self._placed = True
            parent = self.parentWidget()
            if parent is not None and parent.screen() is not None:
                self.setScreen(parent.screen())
            place_default(self, self.default_size)
        if self.isMinimized():
            self.showNormal()
        self.show()
        self.raise_()
        self.activateWindow()


class ExperimentsWindow(PanelWindow):
    """See the module docstring."""

    def __init__(self, panel: ExperimentsPanel, parent: QWidget | None = None) -> None:
        super().__init__(panel, "Experiments", "experimentsWindow", EXPERIMENTS_SIZE, parent)

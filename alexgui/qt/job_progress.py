"""The progress of a background job as the panels show it: a bar with a count (or a busy bar when
the amount is unknown), the time left once it can be estimated, and a Cancel button; hidden while
no job runs."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget

from alexgui.formatting import format_duration

# Below this the estimate of the time left jumps about too much to be worth reading.
ETA_AFTER_S = 2.0


def count_text(done: int, total: int) -> str:
    return f"{done} / {total}"


def megabytes_text(done: int, total: int) -> str:
    return f"{done / 1e6:.0f} / {total / 1e6:.0f} MB"


class JobProgress(QWidget):
    """See the module docstring. `begin` shows it, `advance` reports, `end` hides it."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.cancel_button)
        self._started = 0.0
        self._describe: Callable[[int, int], str] = count_text
        self._label = ""
        self.hide()

    def begin(self, total: int = 0, cancellable: bool = True, label: str = "",
              describe: Callable[[int, int], str] = count_text) -> None:
        """Show the bar: busy until the first `advance` when `total` is 0 (not known yet)."""
        self._started = time.monotonic()
        self._describe = describe
        self._label = label
        self.cancel_button.setVisible(cancellable)
        self.advance(0, total)
        self.show()

    def advance(self, done: int, total: int, label: str | None = None) -> None:
        if label is not None:
            self._label = label
        if total <= 0:
            self.bar.setRange(0, 0)  # busy
            self.bar.setFormat(self._label)
            return
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * min(done, total) / total))
        text = self._describe(done, total)
        if self._label:
            text = f"{self._label} {text}"
        elapsed = time.monotonic() - self._started
        if 0 < done < total and elapsed >= ETA_AFTER_S:
            text += f" · {format_duration(elapsed * (total - done) / done)} left"
        self.bar.setFormat(text)

    def end(self) -> None:
        self.hide()

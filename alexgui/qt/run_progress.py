"""The Training dock's progress view: the selected run's epoch bar, its ETA, its latest numbers."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from alexgui.engine.training.history import RunHistory
from alexgui.formatting import format_duration


class ProgressView(QWidget):
    """Epoch progress with ETA, and the latest numbers, for the run selected in the runs list."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("No run yet")
        self.title.setObjectName("progressTitle")
        self.title.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(8)
        self.eta = QLabel("")
        self.eta.setObjectName("hint")
        self.eta.setWordWrap(True)  # a long hint or ETA wraps instead of widening the dock
        self.numbers = QLabel("")
        self.numbers.setObjectName("numbers")
        self.numbers.setWordWrap(True)
        self.message = QLabel("")
        self.message.setObjectName("errorMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        for w in (self.title, self.bar, self.eta, self.numbers, self.message):
            layout.addWidget(w)

    def show_history(self, h: RunHistory | None, live: bool) -> None:
        if h is None:
            self.title.setText("No run yet")
            self.bar.setValue(0)
            self.eta.setText("Start trains on the selected dataset; Open run watches one.")
            self.numbers.setText("")
            self.message.hide()
            return
        last = h.last_step
        if h.state == "preparing" and h.progress is not None:
            p = h.progress
            self.title.setText(f"Preparing data: {p.stage}")
            self.bar.setValue(int(1000 * p.done / p.total) if p.total else 0)
            self.eta.setText(f"{p.done} of {p.total}")
        elif last is not None and h.started is not None:
            self.title.setText(f"Epoch {last.epoch + 1} of {h.started.epochs}  ·  batch {last.batch} of {last.batches}")
            self.bar.setValue(int(1000 * last.batch / max(last.batches, 1)))
            epoch_eta, run_eta = h.eta()
            if h.state == "running" and epoch_eta is not None:
                self.eta.setText(f"ETA: epoch {format_duration(epoch_eta)}, run {format_duration(run_eta)}")
            elif h.state == "paused":
                self.eta.setText("Paused")
            elif not live and h.state in ("running", "new") and h.last_event_time is not None:
                self.eta.setText(f"Last update {format_duration(time.time() - h.last_event_time)} ago")
            else:
                self.eta.setText(h.message.capitalize() if h.message and h.state != "failed" else "")
        elif h.started is not None:
            self.title.setText(f"Epoch 1 of {h.started.epochs}  ·  starting")
            self.bar.setValue(0)
            self.eta.setText("")
        else:
            self.title.setText({"new": "Starting…", "failed": "Failed before the first step"}.get(h.state, h.state.capitalize()))
            self.bar.setValue(0)
            self.eta.setText("")
        parts = []
        if last is not None:
            parts.append(f"loss {last.loss:.3f} (smoothed {h.column('loss_smooth')[-1]:.3f})")
            parts.append(f"train top-1 {h.column('top1_smooth')[-1]:.1f}%")
        if h.last_epoch is not None and h.last_epoch.val_top1_err is not None:
            e = h.last_epoch
            parts.append(f"val top-1 {100 * e.val_top1_err:.1f}%, top-5 {100 * (e.val_top5_err or 0):.1f}%")
        if last is not None:
            parts.append(f"{h.column('ips_smooth')[-1]:.0f} images/s, lr {last.lr:g}")
        self.numbers.setText("  ·  ".join(parts))
        if h.state == "failed" and h.message:
            self.message.setText(h.message)
            self.message.show()
        else:
            self.message.hide()

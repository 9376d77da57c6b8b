"""The event log: what happened in a run, in words (pre-flight, checkpoints, schedule drops, errors)."""

from __future__ import annotations

import html
import time

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit, QVBoxLayout, QWidget

from alexgui.engine.events import (
    CheckpointSaved,
    EpochDone,
    Event,
    Failed,
    Finished,
    LrDropped,
    Paused,
    PreflightReport,
    Progress,
    Resumed,
    RunStarted,
    StepDone,
    Stopped,
)

LEVEL_COLORS = {"info": "#c9d1d9", "good": "#7ee2a8", "warn": "#f0c674", "error": "#ff7b72", "muted": "#8b949e"}
MAX_SKIPPED_LINES = 30  # the full list is in the run's preflight.json


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def describe_event(ev: Event) -> list[tuple[str, str]]:
    """(level, text) lines for an event worth reading; steps and progress ticks give none."""
    if isinstance(ev, (StepDone, Progress)):
        return []
    if isinstance(ev, RunStarted):
        verb = "Resumed" if ev.resumed else "Started"
        return [("info", f"{verb} at step {ev.step}: {ev.arch} AlexNet on {ev.device}, {ev.num_classes} classes, "
                         f"{ev.train_images} training / {ev.val_images} validation images, "
                         f"{ev.steps_per_epoch} steps per epoch, {ev.epochs} epochs")]
    if isinstance(ev, PreflightReport):
        if not ev.skipped:
            return [("good", f"Pre-flight: {ev.images_ok} images OK, none skipped")]
        lines = [("warn", f"Pre-flight: {ev.images_ok} images OK, {len(ev.skipped)} skipped:")]
        for item in ev.skipped[:MAX_SKIPPED_LINES]:
            lines.append(("warn", f"    {item.get('path', '?')}: {item.get('reason', '?')}"))
        if len(ev.skipped) > MAX_SKIPPED_LINES:
            lines.append(("warn", f"    … and {len(ev.skipped) - MAX_SKIPPED_LINES} more (see preflight.json in the run folder)"))
        return lines
    if isinstance(ev, EpochDone):
        crops = "10-crop" if ev.ten_crop else "centre-crop"
        val = (f"val loss {ev.val_loss:.3f}, top-1 {_pct(ev.val_top1_err)}, top-5 {_pct(ev.val_top5_err)} ({crops})"
               if ev.val_loss is not None else "no validation images")
        return [("info", f"Epoch {ev.epoch + 1} done in {ev.seconds:.0f} s: train loss {ev.train_loss:.3f}, "
                         f"top-1 {_pct(ev.train_top1_err)}, top-5 {_pct(ev.train_top5_err)}; {val}")]
    if isinstance(ev, LrDropped):
        return [("warn", f"Learning rate {ev.old_lr:g} → {ev.new_lr:g}: {ev.reason}")]
    if isinstance(ev, CheckpointSaved):
        return [("muted", f"Checkpoint ({ev.kind}) saved at step {ev.step}: {ev.path}")]
    if isinstance(ev, Paused):
        return [("info", f"Paused at step {ev.step}")]
    if isinstance(ev, Resumed):
        return [("info", f"Resumed at step {ev.step}")]
    if isinstance(ev, Finished):
        return [("good", f"Finished at step {ev.step} ({ev.reason.replace('_', ' ')})")]
    if isinstance(ev, Stopped):
        where = f"; checkpoint {ev.checkpoint}" if ev.checkpoint else ""
        return [("info", f"Stopped at step {ev.step}{where}")]
    if isinstance(ev, Failed):
        where = f" The last good checkpoint is {ev.checkpoint}." if ev.checkpoint else ""
        return [("error", f"Failed at step {ev.step}: {ev.message}.{where}")]
    return [("muted", f"{ev.type} at step {ev.step}")]


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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(self.view, 1)

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

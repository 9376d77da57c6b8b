"""The runs open in the window: each one's history, colour and folder, and a watcher for a run that
another process writes (`alexgui train`, maybe on another machine and a shared disk).

`RunRegistry` is a plain model: the runs list, the curves and the log are views that the window keeps
in step with its signals. It knows nothing of training; the window adds the run it trains and feeds
that run's history from the training session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor

from alexgui.engine.events import Event
from alexgui.engine.training.history import RunHistory
from alexgui.qt.plots import run_color
from alexgui.qt.session import WATCH_POLL_MS, RunWatcher

MAX_PROBLEM_LINES = 20  # unreadable lines logged one by one; the rest are counted


@dataclass
class RunEntry:
    key: str
    history: RunHistory
    color: QColor
    path: Path | None = None
    source: str = "trained here"  # or "watching"
    watcher: RunWatcher | None = None
    visible: bool = True

    @property
    def name(self) -> str:
        return self.history.name


class RunRegistry(QObject):
    """See the module docstring. Keys ("run1", "run2", ...) are never reused while the window lives."""

    added = Signal(object)  # RunEntry, with its history so far
    removed = Signal(str)  # key
    changed = Signal()  # a watched run's history has news, or was read again from the start
    events = Signal(list, str)  # a watched run's new events and its name: for the log
    message = Signal(str, str, str)  # text, level ("info", "warn"), run name: for the log

    def __init__(self, poll_ms: int = WATCH_POLL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runs: dict[str, RunEntry] = {}
        self._poll_ms = poll_ms
        self._counter = 0

    def add(self, history: RunHistory, path: Path | None, source: str, watcher: RunWatcher | None = None) -> RunEntry:
        """A new entry with its own key and colour; a name already in the list gets the key's number."""
        self._counter += 1
        key = f"run{self._counter}"
        if history.name in {e.name for e in self.runs.values()}:
            history.name = f"{history.name} ({self._counter})"
        entry = RunEntry(key, history, run_color(self._counter - 1), path, source, watcher)
        self.runs[key] = entry
        self.added.emit(entry)
        return entry

    def find(self, path: Path) -> RunEntry | None:
        """The entry already showing this run folder, if any."""
        path = path.resolve()
        for entry in self.runs.values():
            if entry.path is not None and entry.path.resolve() == path:
                return entry
        return None

    def watch(self, path: Path) -> tuple[RunEntry, list[Event]]:
        """Read a run folder's history and follow it; the entry and the events read so far.

        Raises RunOpenError (naming the folder and the problem) for a folder that is not a usable run.
        """
        watcher = RunWatcher(path, self._poll_ms, parent=self)
        try:
            history_events, problems = watcher.open()
        except Exception:  # re-raised: only the watcher is tidied up here
            watcher.deleteLater()
            raise
        history = RunHistory(path.name)
        history.add(history_events)
        entry = self.add(history, path, "watching", watcher)
        # Lambdas that carry the key: an entry removed meanwhile is looked up and ignored.
        watcher.events.connect(lambda events, key=entry.key: self._on_watched_events(key, events))
        watcher.problems.connect(lambda lines, key=entry.key: self._report_problems(key, lines))
        watcher.restarted.connect(lambda key=entry.key: self._on_watched_restart(key))
        self._report_problems(entry.key, problems)
        watcher.start()
        return entry, history_events

    def stop_watching(self, entry: RunEntry) -> None:
        """Stop following the entry's folder (its events now come from elsewhere, or it is going away)."""
        if entry.watcher is not None:
            entry.watcher.stop()
            entry.watcher.deleteLater()
            entry.watcher = None

    def remove(self, key: str) -> RunEntry | None:
        entry = self.runs.pop(key, None)
        if entry is not None:
            self.stop_watching(entry)
            self.removed.emit(key)
        return entry

    def close(self) -> None:
        """Stop every watcher's timer (the window is closing); the entries stay as they are."""
        for entry in self.runs.values():
            if entry.watcher is not None:
                entry.watcher.stop()

    def _on_watched_events(self, key: str, events: list[Event]) -> None:
        entry = self.runs.get(key)
        if entry is None:
            return
        entry.history.add(events)
        self.events.emit(events, entry.name)
        self.changed.emit()

    def _on_watched_restart(self, key: str) -> None:
        entry = self.runs.get(key)
        if entry is None:
            return
        entry.history = RunHistory(entry.name)
        self.message.emit(f"{entry.path}: metrics.jsonl was replaced; reading it again from the start", "warn", entry.name)
        self.changed.emit()

    def _report_problems(self, key: str, lines: list[str]) -> None:
        entry = self.runs.get(key)
        if entry is None:
            return
        for line in lines[:MAX_PROBLEM_LINES]:
            self.message.emit(line, "warn", entry.name)
        if len(lines) > MAX_PROBLEM_LINES:
            self.message.emit(f"… and {len(lines) - MAX_PROBLEM_LINES} more unreadable lines", "warn", entry.name)

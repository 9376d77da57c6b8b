"""Train > Start, Pause, Stop, Save and Continue: the window's TrainSession, driven and shown.

The run being trained is an entry of the window's RunRegistry like any other; this object adds it when
the session starts a run, feeds its history with the session's events, and keeps the Train actions,
the form and the status bar's state and device texts in step with the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QTimer, SignalInstance
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QStatusBar

from alexgui.engine.events import Event, Failed, RunStarted
from alexgui.engine.training.history import RunHistory
from alexgui.qt.app import icon
from alexgui.qt.dataset_check import DatasetChecker, DatasetSummary
from alexgui.qt.panels.log import LogPanel
from alexgui.qt.panels.monitor import MonitorPanel
from alexgui.qt.panels.runs import RunsPanel
from alexgui.qt.plots import MetricPlots
from alexgui.qt.run_registry import RunEntry, RunRegistry
from alexgui.qt.session import TrainSession
from alexgui.qt.settings import AppSettings

STATE_TEXT = {
    "idle": "Idle",
    "running": "Training",
    "pausing": "Pausing after this step…",
    "paused": "Paused",
    "stopping": "Stopping: writing a checkpoint…",
}
FINAL_TEXT = {"finished": "Finished", "stopped": "Stopped", "failed": "Failed"}
LOSS_LOG_KEY = "plots/loss_log"


class TrainingWindow(Protocol):
    """What the controls use of the window (MainWindow, which builds them: importing it here would be a cycle)."""

    session: TrainSession
    registry: RunRegistry
    settings: AppSettings
    monitor: MonitorPanel
    log: LogPanel
    runs_panel: RunsPanel
    plots: MetricPlots
    state_label: QLabel
    device_label: QLabel
    act_start: QAction
    act_pause: QAction
    act_stop: QAction
    act_save: QAction
    act_resume_run: QAction
    closed: SignalInstance

    def statusBar(self) -> QStatusBar: ...
    def close(self) -> bool: ...
    def show_error(self, title: str, text: str) -> None: ...
    def current_run(self) -> RunEntry | None: ...
    def refresh_views(self) -> None: ...
    def update_progress(self) -> None: ...


class TrainingControls:
    """See the module docstring. `key` is the registry key of the run being trained, or None."""

    def __init__(self, window: TrainingWindow) -> None:
        self.window = window
        self.session = window.session
        self.registry = window.registry
        self.key: str | None = None
        self.closing = False  # the window closes once the run has stopped
        self.session.run_started.connect(self._on_run_started)
        self.session.events.connect(self._on_events)
        self.session.state_changed.connect(self._on_state)
        self.session.finished.connect(self._on_finished)
        self.datasets = DatasetChecker(self.session)
        self.datasets.accepted.connect(self._on_dataset_accepted)
        self.datasets.refused.connect(self._on_dataset_refused)
        window.closed.connect(self.datasets.shutdown)
        window.monitor.form.dataset_check_requested.connect(self.choose_dataset)
        # The loss axis's scale is remembered between launches (in the app's QSettings file).
        store = window.settings.store
        window.plots.set_loss_log(bool(store.value(LOSS_LOG_KEY, False, type=bool)))
        window.plots.loss_log_changed.connect(lambda on: store.setValue(LOSS_LOG_KEY, on))

    def entry(self) -> RunEntry | None:
        """The run being trained."""
        return self.registry.runs.get(self.key or "")

    # -- the dataset ------------------------------------------------------------------------

    def choose_dataset(self, folder: str | Path) -> bool:
        """Check a folder chosen as the dataset; the form takes it once the check passes.

        False when it is refused at once (not a folder); otherwise the check runs off the GUI thread
        and ends in the status bar (accepted) or an error message (refused, the form unchanged)."""
        path = Path(folder)
        if not path.is_dir():
            self.window.show_error("Cannot use this dataset", f"{path}: not a folder")
            return False
        self.datasets.check(path)
        self.window.statusBar().showMessage(f"Checking {path}…")
        return True

    def _on_dataset_accepted(self, folder: str, summary: DatasetSummary) -> None:
        w = self.window
        w.monitor.form.set_dataset(folder)
        w.settings.add_recent("dataset", folder)
        w.statusBar().showMessage(summary.text(), 10000)

    def _on_dataset_refused(self, folder: str, reason: str) -> None:
        self.window.statusBar().clearMessage()
        self.window.show_error("Cannot use this dataset", f"{reason}\n\nA dataset is a folder with one subfolder of "
                               "images per class (or train/ and val/ folders of class folders).")

    # -- the Train menu ---------------------------------------------------------------------

    def start(self) -> None:
        """A new run with the form's settings, in the runs folder."""
        if self.session.is_running:
            return
        w = self.window
        problem = w.monitor.form.start_from.problem
        if problem:  # checked before a run folder is made (the run checks the weights themselves too)
            w.show_error("Cannot start from this network", problem)
            return
        cfg = w.monitor.form.config()
        w.settings.last_config = cfg
        w.settings.preset = w.monitor.form.preset_name
        self.session.runs_root = w.settings.runs_root
        try:
            self.session.start(cfg)
        except Exception as e:  # noqa: BLE001 - e.g. the runs folder is not writable
            w.show_error("Cannot start training", str(e))
        self.update_actions()

    def resume(self, entry: RunEntry | None) -> None:
        """Continue a stopped run (trained here or watched) from its last checkpoint, in its own folder."""
        if entry is None or entry.path is None or self.session.is_running:
            return
        from alexgui.engine.store.rundir import RunDir

        w = self.window
        try:
            cfg = RunDir.open(entry.path).config()
        except Exception as e:  # noqa: BLE001 - any unreadable run folder is reported, not raised
            w.show_error("Cannot continue run", str(e))
            return
        if cfg.train.max_steps and entry.history.step_count >= cfg.train.max_steps:
            # It stopped at its step limit (alexgui train --max-steps): continuing means past it.
            w.log.add_message(
                f"Continuing past the run's step limit ({cfg.train.max_steps}) until its {cfg.train.epochs} epochs end",
                "info", entry.name,
            )
            cfg.train.max_steps = 0
        self.registry.stop_watching(entry)  # the events now come from our own thread
        entry.source = "trained here"
        self.key = entry.key
        try:
            self.session.start(cfg, run_path=entry.path, resume=True)
        except Exception as e:  # noqa: BLE001 - reported; the run stays as it was
            self.key = None
            w.show_error("Cannot continue run", str(e))
        self.update_actions()

    def toggle_pause(self) -> None:
        if self.session.is_paused:
            self.session.resume()
        else:
            self.session.pause()
        self.update_actions()

    def stop(self) -> None:
        self.session.stop()
        self.update_actions()

    def stop_then_close(self) -> None:
        """Stop (a checkpoint is written first) and close the window once the thread has ended."""
        self.closing = True
        self.session.stop()

    def save_now(self) -> None:
        if self.session.is_running:
            self.session.save_now()
            self.window.statusBar().showMessage("A checkpoint will be written after the current step", 4000)

    # -- what the session reports -----------------------------------------------------------

    def _on_run_started(self, path: str) -> None:
        w = self.window
        run_path = Path(path)
        entry = self.entry()  # a continued run keeps its entry
        if entry is None:
            entry = self.registry.add(RunHistory(run_path.name), run_path, "trained here")
            self.key = entry.key
        entry.history.max_steps = w.monitor.form.config().train.max_steps
        w.runs_panel.set_current(entry.key)
        w.log.add_message(f"Training in {run_path}", "info", entry.name if len(self.registry.runs) > 1 else "")
        w.monitor.set_form_enabled(False)
        w.refresh_views()

    def _on_events(self, events: list[Event]) -> None:
        entry = self.entry()
        if entry is None:
            return
        w = self.window
        entry.history.add(events)
        w.log.add_events(events, entry.name if len(self.registry.runs) > 1 else "")
        for ev in events:
            if isinstance(ev, RunStarted):
                w.device_label.setText(f"Device: {ev.device}")
            if isinstance(ev, Failed):
                last_good = f"\n\nThe last good checkpoint is {ev.checkpoint}." if ev.checkpoint else ""
                w.show_error("Training failed", ev.message + last_good)
        w.refresh_views()

    def _on_state(self, state: str) -> None:
        self.window.state_label.setText(STATE_TEXT.get(state, state))
        self.update_actions()

    def _on_finished(self, final: str) -> None:
        w = self.window
        entry = self.entry()
        self.key = None
        w.monitor.set_form_enabled(True)
        w.state_label.setText(FINAL_TEXT.get(final, final))
        if entry is not None:
            w.runs_panel.update_run(entry)
        w.plots.set_live(False)
        self.update_actions()
        self.update_device_label()
        w.update_progress()
        if self.closing:
            QTimer.singleShot(0, w.close)

    # -- keeping the controls in step ---------------------------------------------------------

    def update_actions(self) -> None:
        w = self.window
        running = self.session.is_running
        state = self.session.state
        w.act_start.setEnabled(not running)
        w.act_pause.setEnabled(running and state in ("running", "pausing", "paused"))
        paused = self.session.is_paused
        w.act_pause.setText("Resume" if paused else "Pause")
        w.act_pause.setIcon(icon("start" if paused else "pause"))
        w.act_stop.setEnabled(running and state != "stopping")
        w.act_save.setEnabled(running and state != "stopping")
        entry = w.current_run()
        w.act_resume_run.setEnabled(not running and entry is not None and entry.path is not None
                                    and entry.history.state in ("stopped", "failed", "finished"))
        w.monitor.set_form_enabled(not running)

    def update_device_label(self) -> None:
        """The device the form would train on; while training, the one RunStarted reported."""
        if not self.session.is_running:
            form = self.window.monitor.form
            bf16 = " · bf16" if form.bf16.isChecked() else ""
            self.window.device_label.setText(f"Device: {form.device.currentText()}{bf16}")

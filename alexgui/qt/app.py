"""The desktop app's main window: menus, toolbar, status bar, the training monitor and dockable panels.

Panels from other modules dock with `MainWindow.add_panel`; files dropped anywhere on the window
arrive as `files_dropped(list[Path])`; File > Export and File > Open model emit `export_requested`
and `model_open_requested(Path)` for whoever provides them.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pyqtgraph.util.garbage_collector import GarbageCollector
from PySide6.QtCore import QMetaMethod, QSize, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QIcon,
    QKeySequence,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QToolBar,
    QWidget,
)

from alexgui import __version__
from alexgui.engine.devices import device_choices
from alexgui.engine.events import Event, Failed, RunStarted
from alexgui.paths import shipped
from alexgui.qt.panels.log import LogPanel
from alexgui.qt.panels.monitor import MonitorPanel
from alexgui.qt.panels.runs import RunEntry, RunsPanel
from alexgui.qt.plots import MetricPlots, run_color
from alexgui.qt.session import (
    RunHistory,
    RunOpenError,
    RunWatcher,
    TrainFn,
    TrainSession,
)
from alexgui.qt.settings import AppSettings

RESOURCES = shipped("resources")
PAPER = "Krizhevsky, Sutskever & Hinton, “ImageNet Classification with Deep Convolutional Neural Networks”, NIPS 2012"
MODEL_FILTER = "Models (*.safetensors *.pt *.pth *.onnx);;Checkpoints (*.safetensors *.pt *.pth);;ONNX (*.onnx);;All files (*)"
STATE_TEXT = {
    "idle": "Idle",
    "running": "Training",
    "pausing": "Pausing after this step…",
    "paused": "Paused",
    "stopping": "Stopping: writing a checkpoint…",
}


def icon(name: str) -> QIcon:
    path = RESOURCES / "icons" / f"{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()


def reserve_width(button: QWidget | None, texts: tuple[str, ...]) -> None:
    """Give a button whose text changes the width of its widest text."""
    if not isinstance(button, QAbstractButton):
        return
    current = button.text()
    widths = []
    for text in texts:
        button.setText(text)
        widths.append(button.sizeHint().width())
    button.setText(current)
    button.setMinimumWidth(max(widths))


def apply_theme(app: QApplication) -> None:
    """The style sheet from resources/; without it Qt's default look is used."""
    app.setStyle("Fusion")
    qss = RESOURCES / "style.qss"
    if qss.is_file():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    app.setWindowIcon(icon("alexgui"))


class MainWindow(QMainWindow):
    files_dropped = Signal(list)  # list[Path]: files or folders dropped anywhere on the window (run folders excepted)
    export_requested = Signal()
    model_open_requested = Signal(object)  # Path of a checkpoint or ONNX file
    closed = Signal()  # the window accepted its close: panels stop their background jobs now, not at exit

    def __init__(
        self,
        settings: AppSettings | None = None,
        train_fn: TrainFn | None = None,
        devices: list[tuple[str, str]] | None = None,
        watch_poll_ms: int = 1000,
    ) -> None:
        super().__init__()
        self.settings = settings or AppSettings()
        self.setWindowTitle("alexgui")
        self.setWindowIcon(icon("alexgui"))
        self.setObjectName("alexguiMainWindow")
        self.setDockOptions(
            QMainWindow.DockOption.AnimatedDocks
            | QMainWindow.DockOption.AllowTabbedDocks
            | QMainWindow.DockOption.AllowNestedDocks
        )
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._watch_poll_ms = watch_poll_ms
        self.runs: dict[str, RunEntry] = {}
        self._current_key: str | None = None
        self._training_key: str | None = None
        self._run_counter = 0
        self._close_after_stop = False
        self._restored = False
        self.last_error = ""
        self.devices = list(devices) if devices is not None else device_choices()

        self.session = TrainSession(self.settings.runs_root, train_fn=train_fn, parent=self)
        self.session.run_started.connect(self._on_run_started)
        self.session.events.connect(self._on_training_events)
        self.session.state_changed.connect(self._on_session_state)
        self.session.finished.connect(self._on_session_finished)

        self._make_actions()
        self.plots = MetricPlots()
        self.setCentralWidget(self.plots)
        self.monitor = MonitorPanel([self.act_start, self.act_pause, self.act_stop, self.act_save], self.devices)
        self.log = LogPanel()
        self.runs_panel = RunsPanel()
        self.train_dock = self.add_panel("Training", self.monitor, Qt.DockWidgetArea.LeftDockWidgetArea, "trainingDock")
        self.log_dock = self.add_panel("Log", self.log, Qt.DockWidgetArea.BottomDockWidgetArea, "logDock")
        self.runs_dock = self.add_panel("Runs", self.runs_panel, Qt.DockWidgetArea.BottomDockWidgetArea, "runsDock")
        self.splitDockWidget(self.log_dock, self.runs_dock, Qt.Orientation.Horizontal)
        self.resizeDocks([self.train_dock], [340], Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock, self.runs_dock], [820, 340], Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock], [170], Qt.Orientation.Vertical)
        self._make_menus()
        self._make_toolbar()
        self._make_status_bar()
        # Pause turns into Resume: both buttons keep one width, so the toolbar and the training
        # dock (and with it the plots) do not jump when training pauses.
        for button in (self.toolbar.widgetForAction(self.act_pause), self.monitor.buttons["pause"]):
            reserve_width(button, ("Pause", "Resume"))
        self._default_state = self.saveState()

        form = self.monitor.form
        form.set_recent_datasets(self.settings.recent("dataset"))
        saved = self.settings.last_config
        if saved is not None:
            form.set_config(saved)
        form.dataset_browse_requested.connect(self.choose_dataset)
        form.device.currentIndexChanged.connect(self._update_device_label)
        self.runs_panel.visibility_changed.connect(self._on_visibility_changed)
        self.runs_panel.current_changed.connect(self._on_current_changed)
        self.runs_panel.remove_requested.connect(self.remove_run)
        self.runs_panel.open_requested.connect(self.choose_run)

        self._tick = QTimer(self)  # ETA and "last update" texts age even without new events
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._update_progress)
        self._tick.start()
        self._update_device_label()
        self._update_actions()
        self._update_progress()

    # -- building ---------------------------------------------------------------------------

    def _action(self, text: str, name: str, slot: Callable[[], object], shortcut: QKeySequence | str | None = None,
                icon_name: str | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if icon_name:
            action.setIcon(icon(icon_name))
        shown = f"{tip} ({action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})" if shortcut and tip else tip
        if shown:
            action.setToolTip(shown)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even when menus and toolbar are hidden
        return action

    def _make_actions(self) -> None:
        a = self._action
        self.act_open_dataset = a("Open &dataset folder…", "openDataset", self.choose_dataset, QKeySequence.StandardKey.Open,
                                  "dataset", "Train on an image folder: one subfolder per class")
        self.act_open_run = a("Open &run…", "openRun", self.choose_run, "Ctrl+R", "run",
                              "Watch or compare a run folder (from the app or `alexgui train`)")
        self.act_open_model = a("Open checkpoint or ONNX &model…", "openModel", self.choose_model, "Ctrl+M", "model",
                                "Load a trained model to explore and classify with")
        self.act_export = a("&Export…", "export", self._on_export, "Ctrl+E", "export", "Export the model (ONNX, weights)")
        self.act_quit = a("&Quit", "quit", self.close, "Ctrl+Q")
        self.act_start = a("Start", "start", self.start_training, "F5", "start", "Start training with these settings")
        self.act_pause = a("Pause", "pause", self.toggle_pause, "F6", "pause", "Pause or resume training")
        self.act_stop = a("Stop", "stop", self.stop_training, "Shift+F5", "stop", "Stop training; a checkpoint is written first")
        self.act_save = a("Save", "save", self.save_checkpoint, QKeySequence.StandardKey.Save, "save",
                          "Write a checkpoint now, without stopping")
        self.act_resume_run = a("Continue selected run", "resumeRun", self.resume_selected_run, "Ctrl+F5", None,
                                "Continue the selected stopped run from its last checkpoint")
        self.act_runs_folder = a("Runs folder…", "runsFolder", self.choose_runs_root, None, None,
                                 "Where new runs are written")
        self.act_show_runs_folder = a("Show runs folder", "showRunsFolder", self.show_runs_folder, None, None,
                                      "Open the runs folder in the file manager")
        self.act_reset_layout = a("Reset layout", "resetLayout", self.reset_layout)
        self.act_about = a("&About alexgui", "about", self.show_about, None, None)
        self.act_shortcuts = a("Keyboard shortcuts", "shortcuts", self.show_shortcuts, "F1", None)

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        file.addActions([self.act_open_dataset, self.act_open_run, self.act_open_model])
        self.recent_menu = file.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file.addSeparator()
        file.addAction(self.act_export)
        file.addSeparator()
        file.addAction(self.act_quit)
        train = bar.addMenu("&Train")
        train.addActions([self.act_start, self.act_pause, self.act_stop, self.act_save])
        train.addSeparator()
        train.addAction(self.act_resume_run)
        train.addSeparator()
        train.addActions([self.act_runs_folder, self.act_show_runs_folder])
        self.view_menu = bar.addMenu("&View")
        self.view_menu.addAction(self.act_reset_layout)
        self.view_menu.addSeparator()
        for dock in (self.train_dock, self.log_dock, self.runs_dock):
            self.view_menu.addAction(dock.toggleViewAction())
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.act_shortcuts, self.act_about])

    def _make_toolbar(self) -> None:
        tools = QToolBar("Main toolbar")
        tools.setObjectName("mainToolbar")
        tools.setMovable(False)
        tools.setIconSize(QSize(18, 18))
        tools.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.act_open_dataset, self.act_open_run, self.act_open_model):
            tools.addAction(action)
        tools.addSeparator()
        tools.addActions([self.act_start, self.act_pause, self.act_stop, self.act_save])
        tools.addSeparator()
        tools.addAction(self.act_export)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tools)
        self.toolbar = tools
        # Toolbar texts are short; menus keep the long ones.
        for action, short in ((self.act_open_dataset, "Dataset"), (self.act_open_run, "Run"), (self.act_open_model, "Model"),
                              (self.act_export, "Export")):
            button = tools.widgetForAction(action)
            if button is not None:
                button.setText(short)

    def _make_status_bar(self) -> None:
        self.state_label = QLabel("Idle")
        self.state_label.setObjectName("stateLabel")
        self.device_label = QLabel("")
        self.device_label.setObjectName("deviceLabel")
        self.statusBar().addPermanentWidget(self.state_label)
        self.statusBar().addPermanentWidget(self.device_label)

    def add_panel(self, title: str, widget: QWidget, area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
                  object_name: str | None = None) -> QDockWidget:
        """Dock `widget` (tabbed with panels already in that area); the layout is remembered by object_name."""
        dock = QDockWidget(title, self)
        dock.setObjectName(object_name or f"{title.lower().replace(' ', '')}Dock")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        existing = [d for d in self.findChildren(QDockWidget) if d is not dock and self.dockWidgetArea(d) == area
                    and not d.isFloating()]
        self.addDockWidget(area, dock)
        if existing and area not in (Qt.DockWidgetArea.BottomDockWidgetArea, Qt.DockWidgetArea.LeftDockWidgetArea):
            self.tabifyDockWidget(existing[-1], dock)
        if hasattr(self, "view_menu"):
            self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def restore_layout(self) -> None:
        """Geometry and dock layout from the last session; call after every panel has been added."""
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self._restored = True

    def showEvent(self, event: QShowEvent) -> None:
        if not self._restored:
            self.restore_layout()
        super().showEvent(event)

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)
        for dock in self.findChildren(QDockWidget):
            dock.show()

    # -- opening things ---------------------------------------------------------------------

    def choose_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open dataset folder (one subfolder per class)", self._start_folder("dataset"))
        if folder:
            self.open_dataset(folder)

    def open_dataset(self, folder: str | Path) -> bool:
        path = Path(folder)
        if not path.is_dir():
            self.show_error("Cannot open dataset", f"{path}: not a folder")
            return False
        self.monitor.form.set_dataset(str(path))
        self.settings.add_recent("dataset", path)
        self.statusBar().showMessage(f"Dataset: {path} (checked when training starts)", 5000)
        return True

    def choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open run folder", self._start_folder("run"))
        if folder:
            self.open_run(folder)

    def open_run(self, folder: str | Path) -> RunEntry | None:
        """Show a run folder's history and follow it; a bad folder gives a message, not an exception."""
        path = Path(folder).resolve()
        for entry in self.runs.values():
            if entry.path is not None and entry.path.resolve() == path:
                self.runs_panel.set_current(entry.key)
                return entry
        watcher = RunWatcher(path, self._watch_poll_ms, parent=self)
        try:
            history_events, problems = watcher.open()
        except RunOpenError as e:
            watcher.deleteLater()
            self.show_error("Cannot open run", str(e))
            return None
        entry = self._add_entry(RunHistory(path.name), path, "watching")
        entry.watcher = watcher
        entry.history.add(history_events)
        watcher.events.connect(lambda events, key=entry.key: self._on_watched_events(key, events))
        watcher.problems.connect(lambda lines, name=entry.name: self._log_problems(lines, name))
        watcher.restarted.connect(lambda key=entry.key: self._on_watched_restart(key))
        self._log_problems(problems, entry.name)
        self.log.add_message(f"Opened run {path} ({entry.history.step_count} steps so far)", "info", entry.name)
        self.log.add_events([e for e in history_events if isinstance(e, Failed)], entry.name)
        watcher.start()
        self.settings.add_recent("run", path)
        self.runs_panel.set_current(entry.key)
        self._refresh_views()
        return entry

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint or ONNX model", self._start_folder("model"), MODEL_FILTER)
        if path:
            self.open_model(path)

    def open_model(self, path: str | Path) -> bool:
        path = Path(path)
        if not path.is_file():
            self.show_error("Cannot open model", f"{path}: no such file")
            return False
        if not self._connected(self.model_open_requested):
            self.show_info("Not available yet", "Opening checkpoints and ONNX models is not available in this version yet.")
            return False
        self.settings.add_recent("model", path)
        self.model_open_requested.emit(path)
        return True

    def _on_export(self) -> None:
        if not self._connected(self.export_requested):
            self.show_info("Not available yet", "Export is not available in this version yet.")
            return
        self.export_requested.emit()

    def _connected(self, signal: object) -> bool:
        return self.isSignalConnected(QMetaMethod.fromSignal(signal))

    def _start_folder(self, kind: str) -> str:
        recent = self.settings.recent(kind)
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def _fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        openers = {"dataset": self.open_dataset, "run": self.open_run, "model": self.open_model}
        labels = {"dataset": "Datasets", "run": "Runs", "model": "Models"}
        any_items = False
        for kind, opener in openers.items():
            items = self.settings.recent(kind)
            if not items:
                continue
            menu.addSection(labels[kind])
            for item in items:
                action = menu.addAction(item)
                action.triggered.connect(lambda _=False, p=item, o=opener: o(p))
            any_items = True
        if any_items:
            menu.addSeparator()
            menu.addAction("Clear recent items", self.settings.clear_recent)
        else:
            menu.addAction("No recent items").setEnabled(False)

    # -- drops ------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.handle_dropped(paths)

    def handle_dropped(self, paths: list[Path]) -> None:
        """Run folders open as runs; everything else goes to files_dropped (a folder becomes the dataset if no one takes it)."""
        others = []
        for path in paths:
            if path.is_dir() and (path / "config.toml").is_file() and (path / "checkpoints").is_dir():
                self.open_run(path)
            else:
                others.append(path)
        if not others:
            return
        if self._connected(self.files_dropped):
            self.files_dropped.emit(others)
        elif len(others) == 1 and others[0].is_dir():
            self.open_dataset(others[0])
        else:
            self.statusBar().showMessage("Drop a dataset folder or a run folder here", 5000)

    # -- training ---------------------------------------------------------------------------

    def start_training(self) -> None:
        if self.session.is_running:
            return
        cfg = self.monitor.form.config()
        self.settings.last_config = cfg
        self.settings.preset = self.monitor.form.preset_name
        self.session.runs_root = self.settings.runs_root
        try:
            self.session.start(cfg)
        except Exception as e:  # noqa: BLE001 - e.g. the runs folder is not writable
            self.show_error("Cannot start training", str(e))
        self._update_actions()

    def resume_selected_run(self) -> None:
        entry = self.runs.get(self._current_key or "")
        if entry is None or entry.path is None or self.session.is_running:
            return
        from alexgui.engine.store.rundir import RunDir

        try:
            cfg = RunDir.open(entry.path).config()
        except Exception as e:  # noqa: BLE001
            self.show_error("Cannot continue run", str(e))
            return
        if cfg.train.max_steps and entry.history.step_count >= cfg.train.max_steps:
            # It stopped at its step limit (alexgui train --max-steps): continuing means past it.
            self.log.add_message(
                f"Continuing past the run's step limit ({cfg.train.max_steps}) until its {cfg.train.epochs} epochs end",
                "info", entry.name,
            )
            cfg.train.max_steps = 0
        if entry.watcher is not None:  # the events now come from our own thread
            entry.watcher.stop()
            entry.watcher.deleteLater()
            entry.watcher = None
        entry.source = "trained here"
        self._training_key = entry.key
        try:
            self.session.start(cfg, run_path=entry.path, resume=True)
        except Exception as e:  # noqa: BLE001
            self._training_key = None
            self.show_error("Cannot continue run", str(e))
        self._update_actions()

    def toggle_pause(self) -> None:
        if self.session.is_paused:
            self.session.resume()
        else:
            self.session.pause()
        self._update_actions()

    def stop_training(self) -> None:
        self.session.stop()
        self._update_actions()

    def save_checkpoint(self) -> None:
        if self.session.is_running:
            self.session.save_now()
            self.statusBar().showMessage("A checkpoint will be written after the current step", 4000)

    @Slot(str)
    def _on_run_started(self, path: str) -> None:
        run_path = Path(path)
        if self._training_key is not None and self._training_key in self.runs:
            entry = self.runs[self._training_key]
        else:
            entry = self._add_entry(RunHistory(run_path.name), run_path, "trained here")
            self._training_key = entry.key
        entry.history.max_steps = self.monitor.form.config().train.max_steps
        self.runs_panel.set_current(entry.key)
        self.log.add_message(f"Training in {run_path}", "info", entry.name if len(self.runs) > 1 else "")
        self.monitor.set_form_enabled(False)
        self._refresh_views()

    @Slot(list)
    def _on_training_events(self, events: list[Event]) -> None:
        entry = self.runs.get(self._training_key or "")
        if entry is None:
            return
        entry.history.add(events)
        self.log.add_events(events, entry.name if len(self.runs) > 1 else "")
        for ev in events:
            if isinstance(ev, RunStarted):
                self.device_label.setText(f"Device: {ev.device}")
            if isinstance(ev, Failed):
                self.show_error("Training failed", ev.message + (f"\n\nThe last good checkpoint is {ev.checkpoint}." if ev.checkpoint else ""))
        self._refresh_views()

    @Slot(str)
    def _on_session_state(self, state: str) -> None:
        self.state_label.setText(STATE_TEXT.get(state, state))
        self._update_actions()

    @Slot(str)
    def _on_session_finished(self, final: str) -> None:
        entry = self.runs.get(self._training_key or "")
        self._training_key = None
        self.monitor.set_form_enabled(True)
        self.state_label.setText({"finished": "Finished", "stopped": "Stopped", "failed": "Failed"}.get(final, final))
        if entry is not None:
            self.runs_panel.update_run(entry)
        self.plots.set_live(False)
        self._update_actions()
        self._update_device_label()
        self._update_progress()
        if self._close_after_stop:
            QTimer.singleShot(0, self.close)

    def _update_actions(self) -> None:
        running = self.session.is_running
        state = self.session.state
        self.act_start.setEnabled(not running)
        self.act_pause.setEnabled(running and state in ("running", "pausing", "paused"))
        paused = self.session.is_paused
        self.act_pause.setText("Resume" if paused else "Pause")
        self.act_pause.setIcon(icon("start" if paused else "pause"))
        self.act_stop.setEnabled(running and state != "stopping")
        self.act_save.setEnabled(running and state != "stopping")
        entry = self.runs.get(self._current_key or "")
        self.act_resume_run.setEnabled(not running and entry is not None and entry.path is not None
                                       and entry.history.state in ("stopped", "failed", "finished"))
        self.monitor.set_form_enabled(not running)

    def _update_device_label(self) -> None:
        if not self.session.is_running:
            self.device_label.setText(f"Device: {self.monitor.form.device.currentText()}")

    # -- runs -------------------------------------------------------------------------------

    def _add_entry(self, history: RunHistory, path: Path | None, source: str) -> RunEntry:
        self._run_counter += 1
        key = f"run{self._run_counter}"
        names = {e.name for e in self.runs.values()}
        if history.name in names:
            history.name = f"{history.name} ({self._run_counter})"
        entry = RunEntry(key, history, run_color(self._run_counter - 1), path, source)
        self.runs[key] = entry
        self.runs_panel.add_run(entry)
        self._current_key = self._current_key or key
        return entry

    def remove_run(self, key: str) -> None:
        if key == self._training_key:
            self.statusBar().showMessage("Stop the training run before removing it from the list", 5000)
            return
        entry = self.runs.pop(key, None)
        if entry is None:
            return
        if entry.watcher is not None:
            entry.watcher.stop()
            entry.watcher.deleteLater()
        self.runs_panel.remove_run(key)
        if self._current_key == key:
            self._current_key = self.runs_panel.current_key()
        self._refresh_views()

    def _on_watched_events(self, key: str, events: list[Event]) -> None:
        entry = self.runs.get(key)
        if entry is None:
            return
        entry.history.add(events)
        self.log.add_events(events, entry.name)
        self._refresh_views()

    def _on_watched_restart(self, key: str) -> None:
        entry = self.runs.get(key)
        if entry is None:
            return
        entry.history = RunHistory(entry.name)
        self.log.add_message(f"{entry.path}: metrics.jsonl was replaced; reading it again from the start", "warn", entry.name)
        self._refresh_views()

    def _log_problems(self, lines: list[str], run_name: str) -> None:
        for line in lines[:20]:
            self.log.add_message(line, "warn", run_name)
        if len(lines) > 20:
            self.log.add_message(f"… and {len(lines) - 20} more unreadable lines", "warn", run_name)

    def _on_visibility_changed(self, key: str, visible: bool) -> None:
        if key in self.runs:
            self.runs[key].visible = visible
            self._refresh_views()

    def _on_current_changed(self, key: str) -> None:
        if key in self.runs:
            self._current_key = key
            self._refresh_views()
            self._update_actions()

    def visible_runs(self) -> list[RunEntry]:
        """Checked runs, the current one first (drawn on top)."""
        entries = [e for e in self.runs.values() if e.visible]
        entries.sort(key=lambda e: e.key != self._current_key)
        return entries

    def _refresh_views(self) -> None:
        self.plots.set_live(self.session.is_running)
        self.plots.set_runs([(e.key, e.history, e.color) for e in self.visible_runs()])
        for entry in self.runs.values():
            self.runs_panel.update_run(entry)
        self._update_progress()

    def _update_progress(self) -> None:
        entry = self.runs.get(self._current_key or "")
        live = entry is not None and entry.key == self._training_key
        self.monitor.progress.show_history(entry.history if entry else None, live)
        title = "alexgui"
        if entry is not None:
            title = f"{entry.name} — alexgui"
        if self.windowTitle() != title:
            self.setWindowTitle(title)

    # -- runs folder ------------------------------------------------------------------------

    def choose_runs_root(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for new runs", str(self.settings.runs_root))
        if folder:
            self.settings.runs_root = folder
            self.session.runs_root = Path(folder)
            self.statusBar().showMessage(f"New runs go to {folder}", 5000)

    def show_runs_folder(self) -> None:
        root = self.settings.runs_root
        root.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(root)))

    # -- messages ---------------------------------------------------------------------------

    def show_error(self, title: str, text: str) -> None:
        """Log it, put it in the status bar, and show it without blocking (training goes on)."""
        self.last_error = text
        self.log.add_message(text, "error")
        self.statusBar().showMessage(text.splitlines()[0], 10000)
        self._message(QMessageBox.Icon.Warning, title, text)

    def show_info(self, title: str, text: str) -> None:
        self.statusBar().showMessage(text, 6000)
        self._message(QMessageBox.Icon.Information, title, text)

    def _message(self, kind: QMessageBox.Icon, title: str, text: str) -> None:
        box = QMessageBox(kind, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.open()

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About alexgui",
            f"<h3>alexgui {__version__}</h3>"
            f"<p>See, train and use AlexNet, the network of<br><i>{PAPER}</i>.</p>"
            "<p>Two-tower network, local response normalisation, overlapping pooling, dropout, "
            "the paper's data augmentation and 10-crop testing, with switches for the ablations.</p>"
            f"<p>Python {sys.version.split()[0]}</p>",
        )

    def show_shortcuts(self) -> None:
        rows = "".join(
            f"<tr><td style='padding-right:16px'>{a.text().replace('&', '')}</td>"
            f"<td><b>{a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)}</b></td></tr>"
            for a in self.actions() if not a.shortcut().isEmpty()
        )
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{rows}</table>")

    # -- closing ----------------------------------------------------------------------------

    def confirm_stop_on_close(self) -> bool:
        """Asked when the window closes during training; tests replace it."""
        answer = QMessageBox.question(
            self,
            "Training is running",
            "Stop training and close? A checkpoint is written first, so the run can be continued later.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.session.is_running:
            event.ignore()
            if self._close_after_stop:
                return  # already stopping; the window closes when the thread has ended
            if not self.confirm_stop_on_close():
                return
            self._close_after_stop = True
            self.session.stop()
            self.statusBar().showMessage("Stopping: writing a checkpoint, then closing…")
            return
        self.settings.last_config = self.monitor.form.config()
        self.settings.set_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        for entry in self.runs.values():
            if entry.watcher is not None:
                entry.watcher.stop()
        self._tick.stop()
        event.accept()
        self.closed.emit()


def ensure_app(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else [sys.argv[0]])
        app.setOrganizationName("alexgui")
        app.setApplicationName("alexgui")
        app.setApplicationVersion(__version__)
        # Python's cyclic garbage collector runs in whichever thread allocates when it triggers; in a
        # training or inference thread it would destroy Qt objects off the GUI thread and crash Qt.
        # pyqtgraph's collector turns automatic collection off and collects on a GUI-thread timer.
        _GC.append(GarbageCollector(interval=1.0))
        # Torch work on the GUI thread is small; an OpenMP pool of its own would slow the training
        # thread's (engine/threads.py). Before the window builds anything with torch.
        from alexgui.engine.training.threads import compute_serially_in_this_thread

        compute_serially_in_this_thread()
    assert isinstance(app, QApplication)
    return app


_GC: list[GarbageCollector] = []  # kept alive with the application


def freeze_startup_heap() -> None:
    """Exempt everything built so far (modules, torch, the window) from future garbage collections.

    The collector runs on the GUI thread (see ensure_app); a full pass over the startup heap takes
    about 50 ms there, holding the GIL that the training thread needs. The window and its panels live
    until exit anyway, so scanning them again finds nothing. Called once, after the window is built.
    """
    gc.collect()
    gc.freeze()


def missing_x11_libraries(env: dict[str, str] | None = None, platform: str = sys.platform) -> list[str]:
    """Shared libraries Qt's X11 plugin needs that this machine lacks (Qt would abort without them).

    Fresh Linux installs often lack some (Qt 6.5+ wants libxcb-cursor, -icccm, -keysyms, ...). Asks
    the plugin itself with ldd; without ldd, looks up the libraries Qt 6 is known to need. Only X11
    sessions are checked: Wayland, offscreen and other platforms do not use the plugin."""
    env = dict(os.environ) if env is None else env
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    uses_xcb = qpa == "xcb" or (not qpa and bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY"))
    if not platform.startswith("linux") or not uses_xcb:
        return []
    import ctypes.util
    import shutil
    import subprocess

    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if plugin.is_file() and shutil.which("ldd"):
        try:
            out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        missing = [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]
        return sorted(set(missing))
    needed = {"xcb-cursor": "libxcb-cursor.so.0", "xcb-icccm": "libxcb-icccm.so.4", "xcb-keysyms": "libxcb-keysyms.so.1",
              "xcb-image": "libxcb-image.so.0", "xcb-render-util": "libxcb-render-util.so.0",
              "xkbcommon-x11": "libxkbcommon-x11.so.0"}
    return [soname for name, soname in needed.items() if ctypes.util.find_library(name) is None]


def debian_package(soname: str) -> str:
    """libxcb-icccm.so.4 -> libxcb-icccm4, libxkbcommon-x11.so.0 -> libxkbcommon-x11-0 (Debian's naming)."""
    name, _, version = soname.partition(".so.")
    version = version.split(".")[0]
    return f"{name}{'-' if name[-1:].isdigit() else ''}{version}" if version else name


def has_display(env: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    """Whether Qt can open a window here (without one, Qt would abort the process)."""
    env = dict(os.environ) if env is None else env
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if qpa in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay", "minimalegl"):
        return True
    if not platform.startswith("linux"):
        return True
    if qpa == "xcb":
        return bool(env.get("DISPLAY"))
    if qpa.startswith("wayland"):
        return bool(env.get("WAYLAND_DISPLAY"))
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


"""The desktop app's main window: what its commands do, the runs it shows, and drops.

Its look (actions, menus, toolbar, status bar, docks) is MainWindowUi's (main_window_ui.py); the runs
it shows live in a RunRegistry (run_registry.py); the Train menu drives a TrainSession through
TrainingControls (training_controls.py). Panels from other modules dock with `add_panel`; files
dropped anywhere on the window arrive as `files_dropped(list[Path])`; File > Export and File > Open
model emit `export_requested` and `model_open_requested(Path)` for whoever provides them
(alexgui.qt.explorer).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QMetaMethod, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox

from alexgui.engine.devices import device_choices
from alexgui.engine.events import Failed
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.run_table import RunRow
from alexgui.errors import AlexguiError
from alexgui.qt.main_window_ui import MainWindowUi, reserve_width
from alexgui.qt.panels.log import LogPanel
from alexgui.qt.panels.monitor import MonitorPanel
from alexgui.qt.panels.runs import RunsPanel
from alexgui.qt.plots import MetricPlots
from alexgui.qt.recent_menu import fill_recent_menu
from alexgui.qt.run_registry import RunEntry, RunRegistry
from alexgui.qt.runs_table_dialog import RunsTableDialog
from alexgui.qt.session import WATCH_POLL_MS, RunOpenError, TrainFn, TrainSession
from alexgui.qt.settings import AppSettings
from alexgui.qt.training_controls import TrainingControls
from alexgui.qt.window_fit import fit_window
from alexgui.qt.workers import shutdown_all

TRAIN_DOCK_WIDTH = 360  # the form's fields whole at 1280x800, and 500 pixels left for the curves
JOB_EXIT_WAIT_MS = 60_000  # a checkpoint or an export in progress gets this long to finish on quit
MODEL_FILTER = "Models (*.safetensors *.pt *.pth *.onnx);;Checkpoints (*.safetensors *.pt *.pth);;ONNX (*.onnx);;All files (*)"


class MainWindow(MainWindowUi):
    files_dropped = Signal(list)  # list[Path]: files or folders dropped anywhere on the window (run folders excepted)
    export_requested = Signal()
    model_open_requested = Signal(object)  # Path of a checkpoint or ONNX file
    closed = Signal()  # the window accepted its close: panels stop their background jobs now, not at exit
    current_run_changed = Signal(object)  # the run folder (Path) selected in the runs list, None for one trained only here

    def __init__(
        self,
        settings: AppSettings | None = None,
        train_fn: TrainFn | None = None,
        devices: list[tuple[str, str]] | None = None,
        watch_poll_ms: int = WATCH_POLL_MS,
    ) -> None:
        super().__init__()
        self.settings = settings or AppSettings()
        self._current_key: str | None = None  # the run the progress, the ETA and the title describe
        self.last_error = ""
        self.devices = list(devices) if devices is not None else device_choices()
        self.registry = RunRegistry(watch_poll_ms, parent=self)
        self.session = TrainSession(self.settings.runs_root, train_fn=train_fn, parent=self)

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
        self.resizeDocks([self.train_dock], [TRAIN_DOCK_WIDTH], Qt.Orientation.Horizontal)
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
        self.training = TrainingControls(self)

        for action, slot in (
            (self.act_open_dataset, self.choose_dataset), (self.act_open_run, self.choose_run),
            (self.act_open_model, self.choose_model), (self.act_export, self.export_requested),
            (self.act_start, self.start_training), (self.act_pause, self.toggle_pause),
            (self.act_stop, self.stop_training), (self.act_save, self.save_checkpoint),
            (self.act_resume_run, self.resume_selected_run), (self.act_runs_folder, self.choose_runs_root),
            (self.act_show_runs_folder, self.show_runs_folder),
        ):
            action.triggered.connect(slot)
        self.recent_menu.aboutToShow.connect(
            lambda: fill_recent_menu(self.recent_menu, self.settings,
                                     {"dataset": self.open_dataset, "run": self.open_run, "model": self.open_model}))
        form = self.monitor.form
        form.set_recent_datasets(self.settings.recent("dataset"))
        saved = self.settings.last_config
        if saved is not None:
            form.set_config(saved)
        form.dataset_browse_requested.connect(self.choose_dataset)
        form.device.currentIndexChanged.connect(self.training.update_device_label)
        form.bf16.toggled.connect(self.training.update_device_label)
        self.registry.added.connect(self._on_run_added)
        self.registry.removed.connect(self.runs_panel.remove_run)
        self.registry.changed.connect(self.refresh_views)
        self.registry.events.connect(self.log.add_events)
        self.registry.message.connect(self.log.add_message)
        self.runs_panel.visibility_changed.connect(self._on_visibility_changed)
        self.runs_panel.current_changed.connect(self._on_current_changed)
        self.runs_panel.remove_requested.connect(self.remove_run)
        self.runs_panel.open_requested.connect(self.choose_run)
        self.runs_panel.table_requested.connect(self.show_runs_table)

        self._tick = QTimer(self)  # ETA and "last update" texts age even without new events
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self.update_progress)
        self._tick.start()
        self.training.update_device_label()
        self.training.update_actions()
        self.update_progress()

    @property
    def runs(self) -> dict[str, RunEntry]:
        """Every run in the window by key (the registry's own dict: read it, change it through the registry)."""
        return self.registry.runs

    @property
    def _training_key(self) -> str | None:
        # benchmarks/bench_gui_training.py and docs/make_screenshots.py read it; the controls hold it.
        return self.training.key

    # -- opening things ---------------------------------------------------------------------

    def choose_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open dataset folder (one subfolder per class)",
                                                  self._start_folder("dataset"))
        if folder:
            self.open_dataset(folder)

    def open_dataset(self, folder: str | Path) -> bool:
        """Check the folder (off the GUI thread); the form takes it only if it can be trained on."""
        return self.training.choose_dataset(folder)

    def run_rows(self) -> list[RunRow]:
        """Every opened run with its settings (None where its config.toml cannot be read) and history."""
        rows = []
        for entry in self.runs.values():
            cfg = None
            if entry.path is not None:
                try:
                    cfg = RunDir.open(entry.path).config()
                except (AlexguiError, OSError):
                    pass  # the table shows "–" for its settings; its curves are still there
            rows.append(RunRow(entry.name, cfg, entry.history))
        return rows

    def show_runs_table(self) -> RunsTableDialog:
        dialog = RunsTableDialog(self.run_rows(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open run folder", self._start_folder("run"))
        if folder:
            self.open_run(folder)

    def open_run(self, folder: str | Path) -> RunEntry | None:
        """Show a run folder's history and follow it; a bad folder gives a message, not an exception."""
        path = Path(folder).resolve()
        entry = self.registry.find(path)
        if entry is not None:
            self.show_run(entry)
            self.statusBar().showMessage(f"{entry.name} is already open: selected in the runs list", 5000)
            return entry
        try:
            entry, history_events = self.registry.watch(path)
        except RunOpenError as e:
            self.show_error("Cannot open run", str(e))
            return None
        self.log.add_message(f"Opened run {path} ({entry.history.step_count} steps so far)", "info", entry.name)
        self.log.add_events([e for e in history_events if isinstance(e, Failed)], entry.name)
        self.settings.add_recent("run", path)
        self.runs_panel.set_current(entry.key)
        self.refresh_views()
        return entry

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint or ONNX model", self._start_folder("model"), MODEL_FILTER)
        if path:
            self.open_model(path)

    def open_model(self, path: str | Path) -> bool:
        """Ask whoever provides models (the explorer) to load a checkpoint or ONNX file."""
        path = Path(path)
        if not path.is_file():
            self.show_error("Cannot open model", f"{path}: no such file")
            return False
        self.settings.add_recent("model", path)
        self.model_open_requested.emit(path)
        return True

    def _start_folder(self, kind: str) -> str:
        recent = self.settings.recent(kind)
        return str(Path(recent[0]).parent) if recent else str(Path.home())

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
        if self.isSignalConnected(QMetaMethod.fromSignal(self.files_dropped)):
            self.files_dropped.emit(others)
        elif len(others) == 1 and others[0].is_dir():
            self.open_dataset(others[0])
        else:
            self.statusBar().showMessage("Drop a dataset folder or a run folder here", 5000)

    # -- training (training_controls.py) ----------------------------------------------------

    def start_training(self) -> None:
        self.training.start()

    def resume_selected_run(self) -> None:
        self.training.resume(self.current_run())

    def toggle_pause(self) -> None:
        self.training.toggle_pause()

    def stop_training(self) -> None:
        self.training.stop()

    def save_checkpoint(self) -> None:
        self.training.save_now()

    # -- runs -------------------------------------------------------------------------------

    def show_run(self, entry: RunEntry) -> None:
        """Select a run, draw it, and bring the runs list into view (what re-opening an open run does)."""
        if not entry.visible:
            self.runs_panel.set_checked(entry.key, True)  # the list tells the window (visibility_changed)
        self.runs_panel.set_current(entry.key)
        if self.runs_dock.isHidden():
            self.runs_dock.show()
        self.runs_dock.raise_()

    def current_run(self) -> RunEntry | None:
        """The run selected in the runs list: the one the progress, the ETA and Continue act on."""
        return self.runs.get(self._current_key or "")

    def remove_run(self, key: str) -> None:
        if key == self.training.key:
            self.statusBar().showMessage("Stop the training run before removing it from the list", 5000)
            return
        if self.registry.remove(key) is None:
            return
        if self._current_key == key:
            self._current_key = self.runs_panel.current_key()
        self.refresh_views()

    def _on_run_added(self, entry: RunEntry) -> None:
        self.runs_panel.add_run(entry)
        self._current_key = self._current_key or entry.key

    def _on_visibility_changed(self, key: str, visible: bool) -> None:
        if key in self.runs:
            self.runs[key].visible = visible
            self.refresh_views()

    def _on_current_changed(self, key: str) -> None:
        if key in self.runs:
            self._current_key = key
            self.refresh_views()
            self.training.update_actions()
            self.current_run_changed.emit(self.runs[key].path)

    def visible_runs(self) -> list[RunEntry]:
        """Checked runs, the current one first (drawn on top)."""
        entries = [e for e in self.runs.values() if e.visible]
        entries.sort(key=lambda e: e.key != self._current_key)
        return entries

    def refresh_views(self) -> None:
        """Curves, runs list, progress and title from the runs as they are now."""
        self.plots.set_live(self.session.is_running)
        self.plots.set_runs([(e.key, e.history, e.color) for e in self.visible_runs()])
        for entry in self.runs.values():
            self.runs_panel.update_run(entry)
        self.update_progress()

    def update_progress(self) -> None:
        entry = self.current_run()
        live = entry is not None and entry.key == self.training.key
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
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(root))):
            # No file manager registered (a bare desktop, a remote session): say where it is instead.
            self.log.add_message(f"No file manager could be opened; the runs folder is {root}", "warn")
            self.statusBar().showMessage(f"Runs folder: {root}", 10000)

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
            if self.training.closing:
                return  # already stopping; the window closes when the thread has ended
            if not self.confirm_stop_on_close():
                return
            self.training.stop_then_close()
            self.statusBar().showMessage("Stopping: writing a checkpoint, then closing…")
            return
        self.settings.last_config = self.monitor.form.config()
        fit_window(self)  # what is saved fits this screen (a layout can have grown past it)
        self.settings.set_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.registry.close()
        self._tick.stop()
        event.accept()
        self.closed.emit()  # the panels stop their own jobs (and wait for them)
        # Whatever job is left (one a panel could not cut short) is waited for here: its QThread must
        # not be destroyed running when the interpreter exits.
        for job in shutdown_all(JOB_EXIT_WAIT_MS):
            print(f"alexgui: a background job ({job.name}) did not end in time", file=sys.stderr)


"""The Experiments panel: re-measure one of the paper's claims on your data, watch the variants train
overlaid, and read the result and its report beside the paper's number.

A view over alexgui.engine.experiments: the form (experiment_form.py) makes ExperimentOptions, a
background job iterates run_experiment() (the same generator `alexgui experiment` prints), and the
panel draws what it yields (experiment_curves.py) and renders the report it writes
(experiment_report.py). Cancel asks the current run to stop after its step and save a checkpoint, so
running the same experiment again (same output folder) resumes it. "Open runs in monitor" hands the
run folders to the main window (openRunsRequested), which overlays them with its own plots.

Laid out for a window of its own (experiments_window.py): the form and the controls in a column on
the left, scrolling when short; the curves and the report in tabs on the right.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.events import RunStarted, StepDone
from alexgui.engine.experiments import (
    EXPERIMENTS,
    ExperimentOptions,
    ExperimentStopped,
    ReportReady,
    RunBegins,
    RunEnds,
    RunEvent,
    TowerSnapshot,
    Update,
    run_experiment,
)
from alexgui.engine.experiments.report import REPORT_JSON, REPORT_MD, load_report
from alexgui.formatting import format_duration
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.panels.classify import ERROR_RED
from alexgui.qt.panels.experiment_curves import ExperimentCurves
from alexgui.qt.panels.experiment_form import DEMO, ExperimentForm, default_out_root
from alexgui.qt.panels.experiment_report import ReportView, SummaryView
from alexgui.qt.workers import describe_error

__all__ = ["DEMO", "ExperimentsPanel", "default_out_root"]

REDRAW_MS = 250  # the plot repaints a few times a second, not at every step
SIDE_WIDTH = 360  # the form's column: every field readable, the rest of the width for the plot


def _experiment_job(
    name: str, out: Path, options: ExperimentOptions, graceful: threading.Event, stop: threading.Event, progress: Any
) -> Iterator[Update]:
    # `graceful` (the panel's Cancel) lets the current run save a checkpoint and end with Stopped;
    # the Job's own `stop` (shutdown) would close the generator at once.
    return run_experiment(name, out, options, stop=graceful)


class ExperimentsPanel(JobMixin, QWidget):
    """See the module docstring."""

    openRunsRequested = Signal(list)  # [str]: the experiment's run folders, for the monitor to open
    reportReady = Signal(object)  # the report dict (also saved as OUT/report.json)
    busyChanged = Signal(bool)
    finished = Signal(str)  # "report", "stopped" or "failed"

    def __init__(
        self, out_root: str | Path | None = None, devices: list[tuple[str, str]] | None = None,
        parent: QWidget | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self._graceful = threading.Event()
        self._run_paths: list[str] = []
        self._out: Path | None = None
        self._total_runs = 0
        self._run_steps = 0  # steps this run will take, once RunStarted tells
        self._step = 0
        self._step_times: list[float] = []
        self._outcome = ""
        self._options: ExperimentOptions | None = None
        self.report: dict[str, Any] | None = None
        self.error = ""

        self.form = ExperimentForm(out_root, devices)
        # The fields, as the panel's own (tests, the screenshot script and callers set them directly).
        f = self.form
        self.experiment, self.dataset, self.out_root, self.device = f.experiment, f.dataset, f.out_root, f.device
        self.epochs, self.max_steps, self.seeds, self.batch_size, self.crop = (
            f.epochs, f.max_steps, f.seeds, f.batch_size, f.crop)  # fmt: skip

        # -- controls and progress ------------------------------------------------------------------
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.start())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_report_button = QPushButton("Show report")
        self.open_report_button.setToolTip("The report (report.md with its plots), rendered here")
        self.open_report_button.setEnabled(False)
        self.open_report_button.clicked.connect(self.open_report)
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.setToolTip("The experiment's folder in the file manager: the report, its plots, the runs")
        self.open_folder_button.clicked.connect(self.open_folder)
        self.open_runs_button = QPushButton("Open runs in monitor")
        self.open_runs_button.setToolTip("Overlay the experiment's runs in the main window's curves")
        self.open_runs_button.setEnabled(False)
        self.open_runs_button.clicked.connect(lambda: self.openRunsRequested.emit(list(self._run_paths)))
        buttons = QGridLayout()
        buttons.addWidget(self.run_button, 0, 0)
        buttons.addWidget(self.cancel_button, 0, 1)
        buttons.addWidget(self.open_report_button, 1, 0)
        buttons.addWidget(self.open_folder_button, 1, 1)
        buttons.addWidget(self.open_runs_button, 2, 0, 1, 2)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.status = QLabel("Choose an experiment and press Run.")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)  # _say escapes every text it shows
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 6, 0)
        side_layout.addWidget(self.form)
        side_layout.addLayout(buttons)
        side_layout.addWidget(self.progress)
        side_layout.addWidget(self.status)
        side_layout.addStretch(1)
        side_scroll = QScrollArea()
        side_scroll.setWidget(side)
        side_scroll.setWidgetResizable(True)
        side_scroll.setFrameShape(QFrame.Shape.NoFrame)
        side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)  # never cut off unseen
        side_scroll.setMinimumWidth(SIDE_WIDTH)

        # -- curves and the result beside the paper's claim; the report ---------------------------------
        self.curves = ExperimentCurves()
        self.plot = self.curves.plot
        self.summary = SummaryView()
        self.result, self.paper = self.summary.result, self.summary.paper
        curves_page = QSplitter(Qt.Orientation.Vertical)
        curves_page.addWidget(self.curves)
        curves_page.addWidget(self.summary)
        curves_page.setStretchFactor(0, 3)
        curves_page.setStretchFactor(1, 1)
        curves_page.setChildrenCollapsible(False)
        self.report_view = ReportView()
        self.report_view.runRequested.connect(lambda path: self.openRunsRequested.emit([path]))
        self.tabs = QTabWidget()
        self.tabs.addTab(curves_page, "Curves")
        self.tabs.addTab(self.report_view, "Report")

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(side_scroll)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([SIDE_WIDTH + 20, 800])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.curves.redraw)
        self.form.experiment.currentIndexChanged.connect(self._show_paper)
        self.form.changed.connect(self.show_saved_report)
        self._show_paper()
        self.show_saved_report()

    # ---- the form ------------------------------------------------------------------------------------

    @property
    def experiment_name(self) -> str:
        return self.form.experiment_name

    def set_experiment(self, name: str) -> None:
        self.form.set_experiment(name)

    def set_dataset(self, folder: str | Path) -> None:
        self.form.set_dataset(folder)

    def out_folder(self) -> Path:
        return self.form.out_folder()

    def options(self) -> ExperimentOptions:
        return self.form.options()

    def _show_paper(self) -> None:
        self.summary.show_claim(EXPERIMENTS[self.experiment_name].paper_claim)

    def show_saved_report(self) -> bool:
        """Show the report an earlier run left in this experiment's output folder, with its curves and
        runs; True when there was one. A damaged report.json is named in the status line."""
        if self.is_busy():
            return False
        out = self.out_folder()
        self._reset_view()
        self.error = ""
        if not (out / REPORT_JSON).is_file():
            self._say("Choose an experiment and press Run.")
            return False
        try:
            report = load_report(out)
            self._out = out
            self._display_report(report)
            self.curves.show_report_curves(report.get("curves") or {}, self.seeds.value() > 1)
        except (ValueError, KeyError, TypeError) as e:
            self._reset_view()
            self._show_error(str(e) if str(out) in str(e) else f"{out / REPORT_JSON}: not a readable report ({e})")
            return False
        runs = [out / str(r.get("path", "")) for r in report.get("runs", []) if isinstance(r, dict)]
        self._run_paths = [str(p) for p in runs if p != out and p.is_dir()]
        self.open_runs_button.setEnabled(bool(self._run_paths))
        self._say(f"Report of {report.get('created', 'an earlier run')}: {out / REPORT_MD}. "
                            "Run again with this folder to resume or redo it.")
        return True

    # ---- running ----------------------------------------------------------------------------------------

    def start(self, options: ExperimentOptions | None = None) -> None:
        """Run the chosen experiment (with the form's options, or `options`) in the background."""
        if self.is_busy():
            return
        options = options or self.options()
        self._options = options
        self._out = self.out_folder()
        self._reset_view()
        self._graceful = threading.Event()
        job = self.new_job(_experiment_job, self.experiment_name, self._out, options, self._graceful)
        job.yielded.connect(self._on_update)
        job.errored.connect(lambda e: self._on_failed(describe_error(e)))
        self._outcome = ""
        self.error = ""
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.form.setEnabled(False)  # the settings belong to the run now going
        self.progress.setRange(0, 0)
        self.progress.show()
        self.tabs.setCurrentIndex(0)
        self._say(f"Starting {self.experiment_name} in {self._out}…")
        self._timer.start()
        self.busyChanged.emit(True)
        job.start()

    def cancel(self) -> None:
        """Stop after the current step; the run saves a checkpoint and the next Run resumes it."""
        # Not the job's own cancel, which would close the generator at its next yield, mid-run.
        if self.is_busy():
            self._graceful.set()
            self._say("Stopping after this step (the run saves a checkpoint)…")

    def shutdown(self, msecs: int = 30000) -> None:
        """Stop the run cleanly and wait for the thread (window closing)."""
        if self._job is not None:
            self._graceful.set()
            self._job.wait(msecs)  # the run saves a checkpoint and ends; cut short only after msecs
        super().shutdown(msecs)

    def _reset_view(self) -> None:
        self.curves.reset(towers=EXPERIMENTS[self.experiment_name].kind == "towers")
        self.report_view.clear_report()
        self._run_paths = []
        self.report = None
        self.result.setText("")
        self.open_report_button.setEnabled(False)
        self.open_runs_button.setEnabled(False)

    def _on_update(self, update: Update) -> None:
        if isinstance(update, RunBegins):
            self._total_runs = update.total
            self._run_steps = 0
            self._step_times = []
            self._run_paths.append(str(update.path))
            self.open_runs_button.setEnabled(True)
            verb = {"train": "training", "resume": "resuming", "skip": "finished earlier, skipped"}[update.action]
            self._say(f"Run {update.index + 1} of {update.total}: {update.variant}, seed {update.seed} ({verb})")
        elif isinstance(update, RunEvent):
            self._on_run_event(update)
        elif isinstance(update, TowerSnapshot):
            for tower, score in update.scores.items():
                curve = self.curves.curve(update.index, f"tower {tower}", update.seed, self._several_seeds(),
                                          key=f"tower{tower}")  # fmt: skip
                curve.xs.append(float(update.step))
                curve.ys.append(float(score))
        elif isinstance(update, RunEnds):
            if update.outcome == "failed":
                self._show_error(f"{update.variant} seed {update.seed} failed: {update.message}")
        elif isinstance(update, ExperimentStopped):
            self._outcome = "stopped"
            self._say(f"Stopped. Run again with the same output folder to resume ({update.out}).")
        elif isinstance(update, ReportReady):
            self._outcome = "report"
            self._show_report(update.report)

    def _several_seeds(self) -> bool:
        return (self._options.seeds if self._options is not None else self.seeds.value()) > 1

    def _on_run_event(self, update: RunEvent) -> None:
        e = update.event
        kind = EXPERIMENTS[self.experiment_name].kind
        if isinstance(e, RunStarted):
            total = e.steps_per_epoch * e.epochs
            options_max = self._options.max_steps if self._options is not None else 0
            self._run_steps = min(total, options_max) if options_max else total
            if kind == "speed":
                self._show_target(e.num_classes)
        elif isinstance(e, StepDone):
            self._step = e.step
            self._step_times.append(time.monotonic())
            if kind != "towers":
                self.curves.curve(update.index, update.variant, update.seed, self._several_seeds()).add_smoothed(
                    float(e.step), e.top1_err)
            self._show_progress(update)

    def _show_target(self, num_classes: int) -> None:
        # The same default as the report (engine/experiments/analysis.py): half of chance error.
        from alexgui.engine.experiments.analysis import DEFAULT_TARGET_OF_CHANCE

        given = self._options.target_error if self._options is not None else None
        self.curves.show_target(given if given is not None else DEFAULT_TARGET_OF_CHANCE * (1 - 1 / max(num_classes, 1)))

    def _show_progress(self, update: RunEvent) -> None:
        steps = max(self._run_steps, 1)
        self.progress.setRange(0, steps * max(self._total_runs, 1))
        self.progress.setValue(update.index * steps + min(self._step, steps))
        eta = ""
        times = self._step_times[-50:]
        if len(times) >= 2:
            per_step = (times[-1] - times[0]) / (len(times) - 1)
            remaining = (steps - self._step) + (self._total_runs - update.index - 1) * steps
            eta = f" · ETA {format_duration(max(remaining, 0) * per_step)}"
        self._say(
            f"Run {update.index + 1} of {self._total_runs}: {update.variant}, seed {update.seed} · "
            f"step {self._step} of {steps}{eta}"
        )

    def points(self) -> dict[str, int]:
        """Points drawn per curve label (what a test or the status bar can check)."""
        return self.curves.points()

    # ---- the result ---------------------------------------------------------------------------------------

    def _show_report(self, report: dict[str, Any]) -> None:
        self._display_report(report)
        self._say(f"Report written: {self._out / REPORT_MD if self._out else ''}")
        self.reportReady.emit(report)

    def _display_report(self, report: dict[str, Any]) -> None:
        self.report = report
        self.summary.show_summary(report["summary"])
        if self._out is not None:
            self.report_view.show_report(self._out)
        self.open_report_button.setEnabled(True)

    def open_report(self) -> None:
        """The report, rendered in the Report tab (no desktop launcher needed)."""
        if self.report is not None:
            self.tabs.setCurrentWidget(self.report_view)

    def open_folder(self) -> bool:
        """The experiment's folder in the file manager; where none opens, the status line says where it is."""
        folder = self._out or self.out_folder()
        target = folder if folder.is_dir() else folder.parent
        if target.is_dir() and QDesktopServices.openUrl(QUrl.fromLocalFile(str(target))):
            return True
        reason = "no file manager could be opened" if target.is_dir() else "it does not exist yet (Run creates it)"
        self._say(f"Cannot open the folder {folder}: {reason}.")
        return False

    def _say(self, text: str, error: bool = False) -> None:
        """The status line. A path may break after any "/": to a wrapped label a whole path is one
        word, cut at the column's edge when longer than the column."""
        shown = html.escape(text).replace("/", "/\u200b")
        self.status.setText(f"<span style='color:{ERROR_RED}'>{shown}</span>" if error else shown)

    def _on_failed(self, message: str) -> None:
        self._outcome = "failed"
        self._show_error(message)

    def _show_error(self, message: str) -> None:
        self.error = message
        self._say(message, error=True)

    def job_done(self, cancelled: bool) -> None:
        self._timer.stop()
        self.curves.redraw()
        self.progress.hide()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.form.setEnabled(True)
        self.busyChanged.emit(False)
        self.finished.emit(self._outcome or ("stopped" if cancelled else "failed"))

"""The Experiments panel: re-measure one of the paper's claims on your data, watch the variants train
overlaid, and read the result beside the paper's number.

A view over alexgui.engine.experiments: the form makes ExperimentOptions, a background job iterates
run_experiment() (the same generator `alexgui experiment` prints), and the panel draws what it yields.
Cancel asks the current run to stop after its step and save a checkpoint, so running the same
experiment again (same output folder) resumes it. "Open runs in monitor" hands the run folders to the
main window (openRunsRequested), which overlays them with its own plots.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QToolButton,
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
from alexgui.engine.experiments.report import REPORT_JSON, load_report
from alexgui.formatting import format_duration
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.panels.classify import ERROR_RED
from alexgui.qt.panels.monitor import device_box
from alexgui.qt.plots import BACKGROUND, RUN_COLORS
from alexgui.qt.workers import describe_error

DEMO = "demo"
CHOOSE = "__choose__"
REDRAW_MS = 250  # the plot repaints a few times a second, not at every step
LIVE_SMOOTH_STEPS = 10  # running mean of the live training-error curves (the report uses --smooth-steps)
_STYLES = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine)


def default_out_root() -> Path:
    return Path.home() / "alexgui-experiments"


def _experiment_job(
    name: str, out: Path, options: ExperimentOptions, graceful: threading.Event, stop: threading.Event, progress: Any
) -> Iterator[Update]:
    # `graceful` (the panel's Cancel) lets the current run save a checkpoint and end with Stopped;
    # the Job's own `stop` (shutdown) would close the generator at once.
    return run_experiment(name, out, options, stop=graceful)


@dataclass
class _Curve:
    label: str
    colour: str
    style: Qt.PenStyle
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    window: list[float] = field(default_factory=list)  # the last errors, for the running mean
    item: pg.PlotDataItem | None = None
    drawn: int = 0


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
        self._curves: dict[tuple[int, str], _Curve] = {}
        self._variant_colours: dict[str, str] = {}
        self._run_paths: list[str] = []
        self._out: Path | None = None
        self._total_runs = 0
        self._run_index = 0
        self._run_steps = 0  # steps this run will take, once RunStarted tells
        self._step = 0
        self._step_times: list[float] = []
        self._outcome = ""
        self._options: ExperimentOptions | None = None
        self.report: dict[str, Any] | None = None
        self.error = ""

        # -- the form ---------------------------------------------------------------------------
        self.experiment = QComboBox()
        for e in EXPERIMENTS.values():
            self.experiment.addItem(e.title, e.name)
        self.question = QLabel()
        self.question.setWordWrap(True)
        self.question.setObjectName("hint")
        self.dataset = QComboBox()
        self.dataset.addItem("Built-in demo dataset", DEMO)
        self.dataset.addItem("Choose folder…", CHOOSE)
        self.dataset.setToolTip("An image folder with one subfolder per class (optional train/ and val/), or the demo")
        self.dataset.activated.connect(self._on_dataset_activated)
        self._dataset_value = DEMO
        self.out_root = QLineEdit(str(Path(out_root) if out_root is not None else default_out_root()))
        self.out_root.setToolTip("Runs and the report go to FOLDER/<experiment>; run again with the same folder to resume")
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._choose_out_root)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_root, 1)
        out_row.addWidget(browse)
        self.epochs = self._spin(1, 10_000, 30, "Epochs per run (the ablations compare the last epoch's validation error)")
        self.max_steps = self._spin(0, 10_000_000, 0, "Stop each run at this step; 0 = the epochs decide")
        self.seeds = self._spin(1, 20, 1, "Runs per variant with seeds 0..K-1; 3 or more to see whether an effect "
                                "stands out of the seed-to-seed noise")  # fmt: skip
        self.batch_size = self._spin(1, 4096, 128, "Images per step (paper: 128)")
        self.crop = self._spin(
            32, 224, 224, "Training crop; the paper's is 224. Smaller is faster on a CPU but not the paper's input"
        )
        self.device = device_box(devices)
        form = QFormLayout()
        form.addRow("Experiment", self.experiment)
        form.addRow("Dataset", self.dataset)
        form.addRow("Output folder", out_row)
        form.addRow("Epochs", self.epochs)
        form.addRow("Max steps", self.max_steps)
        form.addRow("Seeds", self.seeds)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Crop", self.crop)
        form.addRow("Device", self.device)
        settings = QGroupBox("Experiment")
        settings_layout = QVBoxLayout(settings)
        settings_layout.addLayout(form)
        settings_layout.insertWidget(1, self.question)

        # -- controls and progress ------------------------------------------------------------------
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.start())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_report_button = QPushButton("Open report")
        self.open_report_button.setEnabled(False)
        self.open_report_button.clicked.connect(self.open_report)
        self.open_runs_button = QPushButton("Open runs in monitor")
        self.open_runs_button.setEnabled(False)
        self.open_runs_button.clicked.connect(lambda: self.openRunsRequested.emit(list(self._run_paths)))
        buttons = QHBoxLayout()
        for b in (self.run_button, self.cancel_button, self.open_report_button, self.open_runs_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.status = QLabel("Choose an experiment and press Run.")
        self.status.setWordWrap(True)

        # -- curves and the result beside the paper's claim -------------------------------------------
        self.plot = pg.PlotWidget()
        self.plot.setBackground(BACKGROUND)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.addLegend(offset=(-10, 10))
        self.plot.setLabel("bottom", "step")
        self.plot.getAxis("left").enableAutoSIPrefix(False)  # errors read as 0.45, not 450 (x0.001)
        self._target_line: pg.InfiniteLine | None = None
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setTextFormat(Qt.TextFormat.RichText)
        self.result.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.paper = QLabel()
        self.paper.setWordWrap(True)
        self.paper.setAlignment(Qt.AlignmentFlag.AlignTop)
        measured_box = QGroupBox("Measured")
        QVBoxLayout(measured_box).addWidget(self.result)
        paper_box = QGroupBox("The paper")
        QVBoxLayout(paper_box).addWidget(self.paper)
        compare_row = QHBoxLayout()
        compare_row.addWidget(measured_box, 3)
        compare_row.addWidget(paper_box, 2)
        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addWidget(self.plot, 3)
        lower_layout.addLayout(compare_row, 2)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(settings)
        top_layout.addLayout(buttons)
        top_layout.addWidget(self.progress)
        top_layout.addWidget(self.status)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(lower)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._redraw)
        self.experiment.currentIndexChanged.connect(self._show_experiment)
        self.out_root.editingFinished.connect(self.show_saved_report)
        self._show_experiment()

    @staticmethod
    def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
        box = QSpinBox()
        box.setRange(lo, hi)
        box.setValue(value)
        box.setToolTip(tip)
        return box

    # ---- the form ------------------------------------------------------------------------------------

    @property
    def experiment_name(self) -> str:
        return str(self.experiment.currentData())

    def set_experiment(self, name: str) -> None:
        index = self.experiment.findData(name)
        if index < 0:
            raise ValueError(f"unknown experiment {name!r}")
        self.experiment.setCurrentIndex(index)

    def set_dataset(self, folder: str | Path) -> None:
        value = str(folder)
        if value != DEMO:
            index = self.dataset.findData(value)
            if index < 0:
                self.dataset.insertItem(self.dataset.count() - 1, Path(value).name or value, value)
                index = self.dataset.findData(value)
            self.dataset.setItemData(index, value, Qt.ItemDataRole.ToolTipRole)
        self._dataset_value = value
        self.dataset.setCurrentIndex(self.dataset.findData(value))

    def out_folder(self) -> Path:
        return Path(self.out_root.text()).expanduser() / self.experiment_name

    def options(self) -> ExperimentOptions:
        crop = self.crop.value()
        return ExperimentOptions(
            data=self._dataset_value,
            epochs=self.epochs.value(),
            max_steps=self.max_steps.value(),
            seeds=self.seeds.value(),
            device=str(self.device.currentData()),
            batch_size=self.batch_size.value(),
            crop=crop,
            resize=max(crop, round(crop * 256 / 224)),  # the paper's 256:224 margin for random crops
        )

    def _show_experiment(self) -> None:
        e = EXPERIMENTS[self.experiment_name]
        self.question.setText(f"{e.question} Recommended: {e.recommended_seeds} seeds.")
        self.paper.setText(html.escape(e.paper_claim))
        self.show_saved_report()

    def show_saved_report(self) -> bool:
        """Show the report an earlier run left in this experiment's output folder, with its curves and
        runs; True when there was one. A damaged report.json is named in the status line."""
        if self.is_busy():
            return False
        out = self.out_folder()
        self._reset_view()
        self.error = ""
        if not (out / REPORT_JSON).is_file():
            self.status.setText("Choose an experiment and press Run.")
            return False
        try:
            report = load_report(out)
            self._out = out
            self._display_report(report)
            curves = report.get("curves") or {}
            if curves:
                self.plot.setLabel("left", str(curves.get("y_label", "")))
                self.plot.setLabel("bottom", str(curves.get("x_label", "")))
            for s in curves.get("series", []):
                curve = self._curve(len(self._curves), str(s["variant"]), int(s["seed"]), key=str(s["label"]))
                points = [(float(x), float(y)) for x, y in zip(s["x"], s["y"]) if x is not None and y is not None]
                curve.xs, curve.ys = [x for x, _ in points], [y for _, y in points]
            self._redraw()
        except (ValueError, KeyError, TypeError) as e:
            self._reset_view()
            self._show_error(str(e) if str(out) in str(e) else f"{out / REPORT_JSON}: not a readable report ({e})")
            return False
        runs = [out / str(r.get("path", "")) for r in report.get("runs", []) if isinstance(r, dict)]
        self._run_paths = [str(p) for p in runs if p != out and p.is_dir()]
        self.open_runs_button.setEnabled(bool(self._run_paths))
        self.status.setText(f"Report of {report.get('created', 'an earlier run')}: {out / 'report.md'}. "
                            "Run again with this folder to resume or redo it.")
        return True

    def _on_dataset_activated(self, index: int) -> None:
        if self.dataset.itemData(index) != CHOOSE:
            self._dataset_value = str(self.dataset.itemData(index))
            return
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder (one subfolder per class)")
        if folder:
            self.set_dataset(folder)
        else:
            self.dataset.setCurrentIndex(self.dataset.findData(self._dataset_value))

    def _choose_out_root(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for experiments", self.out_root.text())
        if folder:
            self.out_root.setText(folder)
            self.show_saved_report()

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
        self.progress.setRange(0, 0)
        self.progress.show()
        self.status.setText(f"Starting {self.experiment_name} in {self._out}…")
        self._timer.start()
        self.busyChanged.emit(True)
        job.start()

    def cancel(self) -> None:
        """Stop after the current step; the run saves a checkpoint and the next Run resumes it."""
        # Not the job's own cancel, which would close the generator at its next yield, mid-run.
        if self.is_busy():
            self._graceful.set()
            self.status.setText("Stopping after this step (the run saves a checkpoint)…")

    def shutdown(self, msecs: int = 30000) -> None:
        """Stop the run cleanly and wait for the thread (window closing)."""
        if self._job is not None:
            self._graceful.set()
            self._job.wait(msecs)  # the run saves a checkpoint and ends; cut short only after msecs
        super().shutdown(msecs)

    def _reset_view(self) -> None:
        self.plot.clear()
        legend = self.plot.plotItem.legend
        if legend is not None:
            legend.clear()
        self._curves.clear()
        self._target_line = None
        self._variant_colours.clear()
        self._run_paths = []
        self.report = None
        self.result.setText("")
        self.open_report_button.setEnabled(False)
        self.open_runs_button.setEnabled(False)
        kind = EXPERIMENTS[self.experiment_name].kind
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "conv1 colour specificity" if kind == "towers" else
                           f"training top-1 error (mean of {LIVE_SMOOTH_STEPS} steps)")  # fmt: skip

    def _on_update(self, update: Update) -> None:
        if isinstance(update, RunBegins):
            self._total_runs = update.total
            self._run_index = update.index
            self._run_steps = 0
            self._step_times = []
            self._run_paths.append(str(update.path))
            self.open_runs_button.setEnabled(True)
            verb = {"train": "training", "resume": "resuming", "skip": "finished earlier, skipped"}[update.action]
            self.status.setText(f"Run {update.index + 1} of {update.total}: {update.variant}, seed {update.seed} ({verb})")
        elif isinstance(update, RunEvent):
            self._on_run_event(update)
        elif isinstance(update, TowerSnapshot):
            for tower, score in update.scores.items():
                curve = self._curve(update.index, f"tower {tower}", update.seed, key=f"tower{tower}")
                curve.xs.append(float(update.step))
                curve.ys.append(float(score))
        elif isinstance(update, RunEnds):
            if update.outcome == "failed":
                self._show_error(f"{update.variant} seed {update.seed} failed: {update.message}")
        elif isinstance(update, ExperimentStopped):
            self._outcome = "stopped"
            self.status.setText(f"Stopped. Run again with the same output folder to resume ({update.out}).")
        elif isinstance(update, ReportReady):
            self._outcome = "report"
            self._show_report(update.report)

    def _on_run_event(self, update: RunEvent) -> None:
        e = update.event
        if isinstance(e, RunStarted):
            total = e.steps_per_epoch * e.epochs
            options_max = self._job_max_steps()
            self._run_steps = min(total, options_max) if options_max else total
            if EXPERIMENTS[self.experiment_name].kind == "speed" and self._target_line is None:
                self._show_target(e.num_classes)
        elif isinstance(e, StepDone):
            self._step = e.step
            self._step_times.append(time.monotonic())
            if EXPERIMENTS[self.experiment_name].kind != "towers":
                curve = self._curve(update.index, update.variant, update.seed)
                curve.window.append(e.top1_err)
                del curve.window[:-LIVE_SMOOTH_STEPS]
                curve.xs.append(float(e.step))
                curve.ys.append(sum(curve.window) / len(curve.window))
            self._show_progress(update)

    def _show_target(self, num_classes: int) -> None:
        # The same default as the report (engine/experiments/analysis.py): half of chance error.
        from alexgui.engine.experiments.analysis import DEFAULT_TARGET_OF_CHANCE

        given = self._options.target_error if self._options is not None else None
        target = given if given is not None else DEFAULT_TARGET_OF_CHANCE * (1 - 1 / max(num_classes, 1))
        self._target_line = pg.InfiniteLine(
            pos=target, angle=0, pen=pg.mkPen("#8b949e", width=1, style=Qt.PenStyle.DashLine),
            label=f"target {100 * target:.1f}%", labelOpts={"position": 0.12, "color": "#8b949e"},
        )  # fmt: skip
        self.plot.addItem(self._target_line)

    def _job_max_steps(self) -> int:
        return self._options.max_steps if self._options is not None else 0

    def _show_progress(self, update: RunEvent) -> None:
        steps = max(self._run_steps, 1)
        done_runs = update.index
        self.progress.setRange(0, steps * max(self._total_runs, 1))
        self.progress.setValue(done_runs * steps + min(self._step, steps))
        eta = ""
        times = self._step_times[-50:]
        if len(times) >= 2:
            per_step = (times[-1] - times[0]) / (len(times) - 1)
            remaining = (steps - self._step) + (self._total_runs - update.index - 1) * steps
            eta = f" · ETA {format_duration(max(remaining, 0) * per_step)}"
        self.status.setText(
            f"Run {update.index + 1} of {self._total_runs}: {update.variant}, seed {update.seed} · "
            f"step {self._step} of {steps}{eta}"
        )

    def _curve(self, index: int, variant: str, seed: int, key: str | None = None) -> _Curve:
        key = key or variant
        curve = self._curves.get((index, key))
        if curve is None:
            colour = self._variant_colours.setdefault(key, RUN_COLORS[len(self._variant_colours) % len(RUN_COLORS)])
            label = f"{variant} (seed {seed})" if self.seeds.value() > 1 or seed else variant
            curve = _Curve(label, colour, _STYLES[seed % len(_STYLES)])
            curve.item = self.plot.plot([], [], name=label, pen=pg.mkPen(colour, width=2, style=curve.style))
            self._curves[(index, key)] = curve
        return curve

    def _redraw(self) -> None:
        for curve in self._curves.values():
            if curve.item is not None and curve.drawn != len(curve.xs):
                curve.item.setData(curve.xs, curve.ys)
                curve.drawn = len(curve.xs)

    def points(self) -> dict[str, int]:
        """Points drawn per curve label (what a test or the status bar can check)."""
        return {c.label: c.drawn for c in self._curves.values()}

    def _show_report(self, report: dict[str, Any]) -> None:
        self._display_report(report)
        self.status.setText(f"Report written: {self._out / 'report.md' if self._out else ''}")
        self.reportReady.emit(report)

    def _display_report(self, report: dict[str, Any]) -> None:
        paragraphs = [_markdown_bold(html.escape(str(p))) for p in report["summary"]]
        self.report = report
        self.result.setText("".join(f"<p>{p}</p>" for p in paragraphs))
        self.open_report_button.setEnabled(True)

    def open_report(self) -> None:
        """Show the report's folder (report.md beside its PNG plots and the run folders)."""
        if self._out is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._out)))

    def _on_failed(self, message: str) -> None:
        self._outcome = "failed"
        self._show_error(message)

    def _show_error(self, message: str) -> None:
        self.error = message
        self.status.setText(f"<span style='color:{ERROR_RED}'>{html.escape(message)}</span>")

    def job_done(self, cancelled: bool) -> None:
        self._timer.stop()
        self._redraw()
        self.progress.hide()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.busyChanged.emit(False)
        self.finished.emit(self._outcome or ("stopped" if cancelled else "failed"))


def _markdown_bold(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)

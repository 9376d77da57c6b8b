"""The Evaluation panel (Train > Evaluate…, a window of its own): how good the model is and where it fails.

Pick the model (the explorer's one model) and the images (by default the validation images of the run
being trained or last opened: the split it trained against), Run: the evaluation streams in the panel's
job with progress and Cancel. Top-1 and top-5 error at the top; the confusion matrix as a heatmap (hover
for "true X, predicted Y: n images"); click a cell for exactly its images, each with its top-5, and
double-click one to open it in the Classify panel; the per-class table, sortable by any column; the
images with the highest loss; Export writes the report folder (report.json, .md, confusion.png,
worst.png and predictions.csv, every image's prediction).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.inference.predict import Predictor
from alexgui.engine.understand.eval_images import find_evaluation_images, run_validation_images
from alexgui.engine.understand.evaluation import EvaluationReport, ImageResult, evaluate
from alexgui.engine.understand.evaluation_files import write_evaluation
from alexgui.errors import Cancelled
from alexgui.qt.explorer_model import ExplorerModel
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.job_progress import JobProgress
from alexgui.qt.panels.classify_cards import ERROR_RED
from alexgui.qt.panels.confusion_view import ConfusionView
from alexgui.qt.panels.model_chooser import ModelChooser
from alexgui.qt.tile_grid import numpy_to_qimage
from alexgui.qt.workers import describe_error

THUMB = 96
WORST = 24
CELL_SHOWN = 200  # thumbnails decoded for a clicked cell (a diagonal cell of ImageNet's val holds 50)


def _evaluate_job(predictor: Predictor, source: str, is_run: bool, ten_crop: bool, stop: threading.Event,
                  progress: Callable[..., None]) -> EvaluationReport | None:
    images = (run_validation_images(source, predictor.class_names) if is_run
              else find_evaluation_images(source, predictor.class_names, predictor.wnids))
    try:
        return evaluate(predictor, images, ten_crop=ten_crop, stop=stop,
                        progress=lambda done, total: progress(done, total, "evaluating"))
    except Cancelled:
        return None


def _export_job(report: EvaluationReport, folder: str, stop: threading.Event, progress: Callable[..., None]) -> list[Path]:
    return write_evaluation(folder, report, worst=WORST)


class EvaluationPanel(JobMixin, QWidget):
    """See the module docstring."""

    evaluated = Signal(object)  # EvaluationReport (GUI thread)
    openInClassify = Signal(str)  # an image path: show it in the Classify panel
    explainImage = Signal(str, int)  # an image path and its true class: show it in the Explain window

    def __init__(self, parent: QWidget | None = None, model: ExplorerModel | None = None) -> None:
        super().__init__(parent)
        self.report: EvaluationReport | None = None
        self.source: str | None = None  # a folder, or a run folder (its validation split)
        self.source_is_run = False
        self.error = ""
        self._shown: list[ImageResult] = []  # the images of the selected cell, as listed

        self.chooser = ModelChooser(model=model)
        self.images_label = QLabel("Images: choose a folder (one subfolder per class), or train a run")
        self.images_label.setWordWrap(True)
        self.folder_button = QPushButton("Images…")
        self.folder_button.setToolTip("A folder with one subfolder per class (its val/ when it has train/ and val/)")
        self.folder_button.clicked.connect(self._choose_folder)
        self.crop = QComboBox()
        self.crop.addItem("Centre crop", False)
        self.crop.addItem("10 crops (paper)", True)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write report.json, report.md, confusion.png, worst.png and predictions.csv")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._choose_export)
        controls = QHBoxLayout()
        for w in (self.folder_button, self.crop, self.run_button, self.export_button):
            controls.addWidget(w)
        controls.addStretch(1)
        self.progress = JobProgress()
        self.progress.cancel_requested.connect(self.cancel)
        self.summary = QLabel("No evaluation yet.")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)

        self.confusion = ConfusionView()
        self.confusion.cellClicked.connect(self.show_cell)
        self.confusion.cellSizeChanged.connect(self._sync_zoom)
        matrix_scroll = QScrollArea()
        matrix_scroll.setWidget(self.confusion)
        matrix_scroll.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.zoom = QSlider(Qt.Orientation.Horizontal)
        self.zoom.setRange(6, 64)
        self.zoom.setToolTip("Cell size (also Ctrl+wheel over the matrix)")
        self.zoom.valueChanged.connect(self.confusion.set_cell)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(matrix_scroll, 1)
        zoom_row = QHBoxLayout()
        zoom_row.addWidget(QLabel("Zoom"))
        zoom_row.addWidget(self.zoom, 1)
        left_layout.addLayout(zoom_row)

        self.cell_caption = QLabel("Click a cell of the matrix to see its images.")
        self.cell_caption.setWordWrap(True)
        self.cell_images = self._gallery()
        self.cell_images.itemDoubleClicked.connect(self._open_item)
        cell_tab = QWidget()
        cell_layout = QVBoxLayout(cell_tab)
        cell_layout.addWidget(self.cell_caption)
        cell_layout.addWidget(self.cell_images, 1)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["class", "images", "precision %", "recall %", "top-1 error %", "top-5 error %"])
        # By class name, A to Z, until the user clicks a header (Qt's default indicator sorts Z to A).
        self.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.worst = self._gallery()
        self.worst.itemDoubleClicked.connect(self._open_item)
        self.tabs = QTabWidget()
        self.tabs.addTab(cell_tab, "Cell images")
        self.tabs.addTab(self.table, "Per class")
        self.tabs.addTab(self.worst, "Highest loss")
        self.explain_button = QPushButton("Explain")
        self.explain_button.setToolTip("Where the network looked in the selected image (Grad-CAM, occlusion, "
                                       "guided backpropagation); double-click an image to classify it")
        self.explain_button.setEnabled(False)
        self.explain_button.clicked.connect(self.explain_selected)
        self.tabs.setCornerWidget(self.explain_button)
        self.tabs.currentChanged.connect(lambda _i: self._update_explain_button())
        for gallery in (self.cell_images, self.worst):
            gallery.currentItemChanged.connect(lambda *_: self._update_explain_button())
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.tabs)
        splitter.setSizes([560, 560])

        layout = QVBoxLayout(self)
        layout.addWidget(self.chooser)
        layout.addWidget(self.images_label)
        layout.addLayout(controls)
        layout.addWidget(self.progress)
        layout.addWidget(self.summary)
        layout.addWidget(splitter, 1)

    @staticmethod
    def _gallery() -> QListWidget:
        view = QListWidget()
        view.setViewMode(QListWidget.ViewMode.IconMode)
        view.setIconSize(QSize(THUMB, THUMB))
        view.setResizeMode(QListWidget.ResizeMode.Adjust)
        view.setWordWrap(True)
        view.setGridSize(QSize(THUMB + 28, THUMB + 44))
        return view

    # ---- what to evaluate -----------------------------------------------------------------------

    @property
    def predictor(self) -> Predictor | None:
        return self.chooser.predictor

    def set_images(self, source: str | Path, is_run: bool = False) -> None:
        """Evaluate this folder (class subfolders), or with is_run this run folder's validation split."""
        self.source, self.source_is_run = str(source), is_run
        what = f"the validation images of run {Path(source).name}" if is_run else str(source)
        self.images_label.setText(f"Images: {what}")

    def offer_run(self, run: str | Path) -> None:
        """A run that just trained becomes the default images, unless the user chose a folder."""
        if self.source is None or self.source_is_run:
            self.set_images(run, is_run=True)

    def run(self) -> None:
        if self.predictor is None:
            self._show_error("Choose a model first (Model menu above).")
            return
        if self.source is None:
            self._show_error("Choose the images first (Images…).")
            return
        if self.is_busy():
            return
        job = self.new_job(_evaluate_job, self.predictor, self.source, self.source_is_run, bool(self.crop.currentData()))
        job.yielded.connect(self._on_report)
        job.progress.connect(self.progress.advance)
        job.errored.connect(lambda e: self._show_error(describe_error(e)))
        self.error = ""
        self.run_button.setEnabled(False)
        self.summary.setText("Evaluating…")
        self.progress.begin(label="evaluating")
        job.start()

    def job_done(self, cancelled: bool) -> None:
        self.progress.end()
        self.run_button.setEnabled(True)
        if cancelled:
            self.summary.setText("Evaluation cancelled." + (" The previous results are below." if self.report else ""))

    def shutdown(self, msecs: int = 30000) -> None:
        super().shutdown(msecs)
        self.chooser.shutdown(msecs)

    # ---- results --------------------------------------------------------------------------------

    def _on_report(self, report: EvaluationReport | None) -> None:
        if report is None:
            return
        self.report = report
        self.export_button.setEnabled(True)
        extra = []
        if report.skipped:
            extra.append(f"{len(report.skipped)} file(s) skipped: " + "; ".join(
                f"{Path(s.path).name}: {s.reason}" for s in report.skipped[:3]) + ("…" if len(report.skipped) > 3 else ""))
        if report.unknown_classes:
            extra.append("folders that name no class of the model: " + ", ".join(report.unknown_classes))
        extra = [html.escape(t) for t in extra]  # file and class names are not markup
        if not report.n:
            self._show_error(f"{report.data}: none of the files could be read as an image. " + " ".join(extra))
            return
        assert report.top1_error is not None and report.top5_error is not None
        self.summary.setText(
            f"<b>Top-1 error {100 * report.top1_error:.1f}%, top-5 error {100 * report.top5_error:.1f}%</b> · "
            f"{report.n} images, {report.crop} crop, {report.seconds:.0f} s"
            + "".join(f"<br><span style='color:{ERROR_RED}'>{t}</span>" for t in extra))
        shown = report.classes()
        self.confusion.set_matrix([report.class_names[c] for c in shown], report.confusion())
        self._sync_zoom(self.confusion.cell)
        self._fill_table(report)
        self._fill(self.worst, report.worst(WORST))
        self.cell_images.clear()
        self.cell_caption.setText("Click a cell of the matrix to see its images.")
        self.evaluated.emit(report)

    def show_cell(self, row: int, col: int) -> None:
        """The images of one confusion cell (positions in the matrix shown)."""
        if self.report is None:
            return
        shown = self.report.classes()
        self._shown = self.report.in_cell(shown[row], shown[col])
        more = f"; the first {CELL_SHOWN} shown" if len(self._shown) > CELL_SHOWN else ""
        self.cell_caption.setText(html.escape(self.confusion.describe(row, col)) + more
                                  + " (double-click one to open it in Classify, or select it and press Explain)")
        self._fill(self.cell_images, self._shown[:CELL_SHOWN])
        self.tabs.setCurrentIndex(0)

    def _fill(self, view: QListWidget, results: list[ImageResult]) -> None:
        assert self.report is not None
        names = self.report.class_names
        view.clear()
        for r in results:
            try:
                icon = QIcon(QPixmap.fromImage(numpy_to_qimage(load_256(r.path, size=THUMB))))
            except ImageError:
                icon = QIcon()  # changed or gone since the evaluation: the caption still tells
            item = QListWidgetItem(icon, f"{names[r.predicted]} {r.top_probs[0]:.0%}")
            item.setData(Qt.ItemDataRole.UserRole, r.path)
            item.setData(Qt.ItemDataRole.UserRole + 1, r.true_index)
            top5 = "\n".join(f"  {p:6.1%}  {names[i]}" for i, p in zip(r.top, r.top_probs))
            item.setToolTip(f"{r.shown_path}\ntrue: {names[r.true_index]} ({r.prob_true:.1%}), loss {r.loss:.2f}\n{top5}")
            view.addItem(item)

    def _fill_table(self, report: EvaluationReport) -> None:
        rows = report.per_class()
        self.table.setSortingEnabled(False)  # filling a sorted table moves rows under the loop
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            values = [row["class"], row["n"], row["precision"], row["recall"], row["top1_error"], row["top5_error"]]
            for j, value in enumerate(values):
                item = QTableWidgetItem()
                if j == 0:
                    item.setText(str(value))
                elif j == 1:
                    item.setData(Qt.ItemDataRole.DisplayRole, int(value))
                elif value is None:
                    item.setText("–")
                else:  # numbers sort as numbers; shown as percentages
                    item.setData(Qt.ItemDataRole.DisplayRole, round(100 * float(value), 1))
                self.table.setItem(i, j, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()

    def _sync_zoom(self, cell: int) -> None:
        self.zoom.blockSignals(True)
        self.zoom.setValue(cell)
        self.zoom.blockSignals(False)

    def _current_gallery_item(self) -> QListWidgetItem | None:
        gallery = {0: self.cell_images, 2: self.worst}.get(self.tabs.currentIndex())  # the tabs' order
        return gallery.currentItem() if gallery is not None else None

    def _update_explain_button(self) -> None:
        self.explain_button.setEnabled(self._current_gallery_item() is not None)

    def explain_selected(self) -> None:
        """The selected image of the current gallery in the Explain window, with its true class offered."""
        item = self._current_gallery_item()
        if item is not None:
            self.explainImage.emit(str(item.data(Qt.ItemDataRole.UserRole)),
                                   int(item.data(Qt.ItemDataRole.UserRole + 1)))

    def _open_item(self, item: QListWidgetItem) -> None:
        self.openInClassify.emit(str(item.data(Qt.ItemDataRole.UserRole)))

    def export(self, folder: str | Path) -> None:
        """Write the report folder in the panel's job (plots and the contact sheet take seconds); the summary
        says where, or why not."""
        if self.report is None or self.is_busy():
            return
        job = self.new_job(_export_job, self.report, str(folder))
        job.yielded.connect(lambda written: self.summary.setText(
            self.summary.text() + f"<br>Saved the report in {html.escape(str(folder))}"))
        job.errored.connect(lambda e: self._show_error(f"{folder}: cannot write the report ({describe_error(e)})"))
        self.progress.begin(label="writing the report", cancellable=False)
        job.start()

    def _choose_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the evaluation report")
        if folder:
            self.export(folder)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Images to evaluate (one subfolder per class)")
        if folder:
            self.set_images(folder)

    def _show_error(self, message: str) -> None:
        self.error = message
        self.summary.setText(f"<span style='color:{ERROR_RED}'>{html.escape(message)}</span>")

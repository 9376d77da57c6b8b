"""File > Export: a model to ONNX, then the PyTorch vs ONNX Runtime parity check, off the GUI thread.

The dialog is a view over engine.inference.parity.export_and_check (the same function `alexgui export`
runs): choose the model, the output file, float16 and the opset, optionally a folder of real images
for the parity check; the export runs as a background job with its progress shown, and the parity report
(also saved as FILE.parity.json) is shown when it is done. Errors are shown in the dialog, which
stays usable. `exported` carries the engine's ExportResult for whoever wants to open the model.

What it pre-fills is the PyTorch model behind the explorer's (`exportable_source`): with fast inference
on, the explorer's model is a cached ONNX file, which cannot be exported again, so the model that file
was made from is named instead. The line under the field names the model by its run folder, and the
parity verdict is shown in the theme's colours (PASSED green, FAILED red).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.model_names import source_title
from alexgui.qt.panels.log import LEVEL_COLORS
from alexgui.qt.plots import BACKGROUND, FOREGROUND
from alexgui.qt.workers import describe_error

if TYPE_CHECKING:  # the engine's inference module imports torch: only its type is needed here
    from alexgui.engine.inference.predict import Predictor

# Kept here (not imported from the engine) so opening the dialog does not import torch and onnx;
# the engine checks the range again.
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 18, 24, 18
_STEPS = 3  # load the model, export, parity check

ExportFn = Callable[..., Any]
PASSED_COLOR, FAILED_COLOR = LEVEL_COLORS["good"], LEVEL_COLORS["error"]  # readable on the dark theme


def exportable_source(predictor: Predictor | None) -> str:
    """The PyTorch model to pre-fill for `predictor`: its own source, or for an ONNX model the model
    it was exported from ("" when that is not known: an .onnx file cannot be exported again)."""
    if predictor is None:
        return ""
    exported_from = str(getattr(predictor, "exported_from", "") or "")
    if exported_from:
        return exported_from
    return "" if predictor.source.lower().endswith(".onnx") else predictor.source


def run_export(
    model: str,
    out: str,
    fp16: bool,
    opset: int,
    images_dir: str | None,
    *,
    stop: threading.Event,
    progress: Callable[[int, int, str], None],
) -> Any:
    """The dialog's job: load, export, check. Returns the engine's ExportResult (None if cancelled)."""
    from alexgui.engine.inference.parity import export_and_check
    from alexgui.engine.inference.predict import PredictorError, TorchPredictor
    from alexgui.engine.inference.sources import load_predictor

    progress(0, _STEPS, f"loading {model}")
    predictor = load_predictor(model, "cpu")
    if not isinstance(predictor, TorchPredictor):
        made_from = getattr(predictor, "exported_from", "")
        hint = f" (it was made from {made_from}: export that)" if made_from else ""
        raise PredictorError(f"{model}: already an ONNX model; choose the PyTorch checkpoint, run folder or "
                             f".pth file to export{hint}")
    if stop.is_set():
        return None
    step = [1]

    def report(message: str) -> None:
        if message.startswith("loading") or message.startswith("comparing"):
            step[0] = 2
        progress(step[0], _STEPS, message)

    result = export_and_check(predictor, out, fp16=fp16, opset=opset, images_dir=images_dir, progress=report)
    progress(_STEPS, _STEPS, "done")
    return result


class ExportDialog(JobMixin, QDialog):
    """Export a model to ONNX; `model` pre-fills the source (a checkpoint, run folder or 'torchvision')."""

    exported = Signal(object)  # engine.inference.parity.ExportResult

    def __init__(self, parent: QWidget | None = None, model: str = "", export_fn: ExportFn = run_export) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export to ONNX")
        self._export_fn = export_fn
        self._close_when_done = False
        self.result: Any = None

        self.model_edit = QLineEdit(model)
        self.model_edit.setPlaceholderText("checkpoint (.safetensors), run folder, .pth, or torchvision")
        self.model_name = QLabel()  # which model that is, by run folder: two runs both have a best.safetensors
        self.model_name.setObjectName("hint")
        self.model_name.setWordWrap(True)
        self.model_edit.textChanged.connect(self._name_model)
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("model.onnx")
        self.images_edit = QLineEdit()
        self.images_edit.setPlaceholderText("optional: a folder of images for the parity check")
        self.fp16_box = QCheckBox("float16 weights (smaller, for GPUs; input and outputs stay float32)")
        self.opset_spin = QSpinBox()
        self.opset_spin.setRange(MIN_OPSET, MAX_OPSET)
        self.opset_spin.setValue(DEFAULT_OPSET)

        form = QFormLayout()
        form.addRow("Model", self._with_buttons(self.model_edit, ("File…", self._choose_model_file),
                                                ("Run folder…", self._choose_model_folder)))
        form.addRow("", self.model_name)
        form.addRow("Save as", self._with_buttons(self.out_edit, ("Browse…", self._choose_out)))
        form.addRow("Parity images", self._with_buttons(self.images_edit, ("Folder…", self._choose_images)))
        form.addRow("Precision", self.fp16_box)
        form.addRow("ONNX opset", self.opset_spin)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, _STEPS)
        self.progress_bar.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.hide()
        self.report_view = QPlainTextEdit()
        self.report_view.setObjectName("parityReport")
        self.report_view.setReadOnly(True)
        # The theme's text on the theme's background: a plain text box kept the light palette's white
        # under the style sheet's light grey text, which could hardly be read.
        self.report_view.setStyleSheet(f"QPlainTextEdit#parityReport {{ background: {BACKGROUND}; color: {FOREGROUND}; "
                                       "border: 1px solid #373e47; border-radius: 6px; }")
        self.report_view.setPlaceholderText("The parity report appears here after the export.")

        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start_export)
        self.close_button.clicked.connect(self.close)
        self.model_edit.textChanged.connect(self._update_buttons)
        self.out_edit.textChanged.connect(self._update_buttons)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.verdict)
        layout.addWidget(self.report_view, 1)
        layout.addWidget(self.buttons)
        self.resize(640, 480)
        self._name_model(model)
        self._update_buttons()

    def _name_model(self, text: str) -> None:
        title = source_title(text.strip())
        self.model_name.setText(title)
        self.model_name.setToolTip(text.strip())
        self.model_name.setVisible(bool(title) and title != text.strip())

    # ---- choosing -------------------------------------------------------------------------------

    def _with_buttons(self, edit: QLineEdit, *buttons: tuple[str, Callable[[], None]]) -> QWidget:
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(edit, 1)
        for text, slot in buttons:
            button = QPushButton(text)
            button.clicked.connect(slot)
            box.addWidget(button)
        return row

    def _choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model to export", "",
                                              "Models (*.safetensors *.pth *.pt);;All files (*)")
        if path:
            self.model_edit.setText(path)
            if not self.out_edit.text():
                self.out_edit.setText(str(Path(path).with_suffix(".onnx")))

    def _choose_model_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Run folder to export")
        if path:
            self.model_edit.setText(path)
            if not self.out_edit.text():
                self.out_edit.setText(str(Path(path) / "model.onnx"))

    def _choose_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save ONNX model", self.out_edit.text() or "model.onnx",
                                              "ONNX models (*.onnx)")
        if path:
            self.out_edit.setText(path if path.lower().endswith(".onnx") else path + ".onnx")

    def _choose_images(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Images for the parity check")
        if path:
            self.images_edit.setText(path)

    # ---- running --------------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self.is_busy()

    @Slot()
    def start_export(self) -> None:
        model, out = self.model_edit.text().strip(), self.out_edit.text().strip()
        if not model or not out or self.is_busy():
            return
        if not out.lower().endswith(".onnx"):
            out += ".onnx"
            self.out_edit.setText(out)
        self.result = None
        self.report_view.clear()
        self.verdict.hide()
        self.progress_bar.setValue(0)
        self._set_status(f"Exporting {model} to {out}…")
        job = self.new_job(self._export_fn, model, out, self.fp16_box.isChecked(), self.opset_spin.value(),
                           self.images_edit.text().strip() or None)
        job.progress.connect(self._on_progress)
        job.yielded.connect(self._on_result)
        job.errored.connect(lambda e: self._on_failed(describe_error(e)))
        self._set_inputs_enabled(False)
        job.start()

    @Slot(int, int, str)
    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        if message:
            self._set_status(message)

    @Slot(object)
    def _on_result(self, result: Any) -> None:
        self.result = result
        report = result.parity
        verdict = "Exported" if report.passed else "Exported, but the parity check FAILED"
        self._set_status(f"{verdict}: {result.path} ({result.size_bytes / 1e6:.1f} MB, {result.seconds:.1f} s)")
        self._show_verdict(report.passed, f"Parity {'PASSED' if report.passed else 'FAILED'}: ONNX Runtime's logits "
                           f"{'match' if report.passed else 'differ from'} PyTorch's "
                           f"{'within' if report.passed else 'beyond'} the tolerance")
        self.report_view.setPlainText(f"{report.summary()}\n\nSaved as {result.parity_path}")
        self.exported.emit(result)

    def _show_verdict(self, passed: bool, text: str) -> None:
        color = PASSED_COLOR if passed else FAILED_COLOR
        self.verdict.setText(f"<span style='color:{color}; font-weight:600; font-size:12pt'>{text}</span>")
        self.verdict.show()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._show_verdict(False, "Export failed")
        self._set_status(f"Export failed: {message}")
        self.report_view.setPlainText(message)

    def job_done(self, cancelled: bool) -> None:
        self._set_inputs_enabled(True)
        if cancelled and self.result is None:
            self._set_status("Export cancelled.")
        if self._close_when_done:
            self._close_when_done = False
            self.close()

    # ---- closing --------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._stop_first():
            event.ignore()
            return
        super().closeEvent(event)

    def reject(self) -> None:  # Escape and the window's close button
        if not self._stop_first():
            super().reject()

    def _stop_first(self) -> bool:
        """While exporting, ask the job to stop and close once it has; True if closing must wait.

        The exporter cannot be interrupted mid-trace, so the job stops after its current step rather
        than leave a thread writing a file behind a closed window.
        """
        if not self.is_busy():
            return False
        self._close_when_done = True
        self.cancel()
        self._set_status("Stopping after the current step…")
        return True

    # ---- helpers --------------------------------------------------------------------------------

    def _set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _set_inputs_enabled(self, enabled: bool) -> None:
        for widget in (self.model_edit, self.out_edit, self.images_edit, self.fp16_box, self.opset_spin):
            widget.setEnabled(enabled)
        for button in self.findChildren(QPushButton):
            if button is not self.close_button:
                button.setEnabled(enabled)
        self._update_buttons()

    def _update_buttons(self) -> None:
        ready = bool(self.model_edit.text().strip() and self.out_edit.text().strip()) and not self.is_running()
        self.export_button.setEnabled(ready)

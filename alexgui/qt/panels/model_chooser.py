"""The model chooser of the Classify and Retrieval panels: which model the explorer uses, and getting it.

A button with a menu of sources (a checkpoint, a run folder, an ONNX file, torchvision's ImageNet
AlexNet from the model zoo, a weights file picked by hand), a line naming the loaded model by its run
folder and file (the full path on hover: model_names.py), the progress of a load or download with
Cancel, and, when a load fails, a wrapped message saying what to do. It is a view of an ExplorerModel:
given the explorer's, every chooser and panel shows and uses the same model.

torchvision's weights: choosing them loads the file when it is on this computer (its SHA-256
verified); when it is not, the chooser asks whether to download it (size and address), then shows the
bytes as they arrive, with Cancel (nothing is kept: zoo.download writes atomically), and loads the
verified file. Offline, or after No, the message says where to put the file, and a button picks it by
hand. Nothing here may widen the window: the name is elided, the message wraps (also inside long
paths, addresses and digests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.inference.predict import Predictor
from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.model import zoo
from alexgui.errors import Cancelled
from alexgui.qt.breakable import breakable_html
from alexgui.qt.elided_label import ElidedLabel
from alexgui.qt.explorer_model import ExplorerModel
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.job_progress import JobProgress, megabytes_text
from alexgui.qt.model_names import model_details, model_title, source_title
from alexgui.qt.workers import describe_error

NO_MODEL = "no model"


@dataclass
class Loaded:
    """What a loading job hands back: the model, how long it took, and the bytes it downloaded."""

    predictor: Predictor
    seconds: float
    downloaded: int = 0


def _load_job(spec: str, allow_download: bool, stop: threading.Event, progress: Callable[..., None]) -> Loaded:
    downloaded = [0]

    def bytes_progress(done: int, total: int) -> None:
        downloaded[0] = done
        progress(done, total, "downloading")

    started = time.monotonic()
    predictor = load_predictor(spec, progress=bytes_progress, stop=stop, allow_download=allow_download)
    return Loaded(predictor, time.monotonic() - started, downloaded[0])


def weights_not_here(error: BaseException) -> bool:
    """The zoo's weights are not on this computer: load_predictor's PredictorError has the zoo's
    OfflineError as its cause (the type decides, not the wording of the message)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, zoo.OfflineError):
            return True
        cause = cause.__cause__
    return False


class ModelChooser(JobMixin, QWidget):
    """See the module docstring. A model loaded here is set on `model` (its own ExplorerModel when
    none is given)."""

    predictorChanged = Signal(object)  # Predictor, whoever set it
    loadFailed = Signal(str)
    logMessage = Signal(str, str)  # a line for the window's log: text, level ("info", "good", "warn", "error")

    def __init__(self, parent: QWidget | None = None, model: ExplorerModel | None = None) -> None:
        super().__init__(parent)
        self.model = model if model is not None else ExplorerModel(self)
        self.failure = ""  # the last load error, for display and tests
        self._spec = ""
        self.button = QToolButton()
        self.button.setText("Model")
        self.button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.button)
        menu.addAction("Checkpoint or ONNX file…", self._choose_file)
        menu.addAction("Run folder…", self._choose_run)
        menu.addSeparator()
        self.torchvision_action = menu.addAction("torchvision ImageNet AlexNet", self.load_torchvision)
        menu.addAction("torchvision weights file…", self.choose_weights)
        self.button.setMenu(menu)
        self.label = ElidedLabel(NO_MODEL)
        self.progress = JobProgress()
        self.progress.cancel_requested.connect(self.cancel)
        self.cancel_button = self.progress.cancel_button
        # What went wrong and what to do, wrapped to the panel's width (never wider: Ignored).
        self.problem = QLabel()
        self.problem.setObjectName("errorMessage")
        self.problem.setWordWrap(True)
        self.problem.setTextFormat(Qt.TextFormat.RichText)
        self.problem.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        self.problem.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        copy = QAction("Copy the message", self.problem)
        copy.triggered.connect(lambda: QApplication.clipboard().setText(self.failure))  # without the break marks
        self.problem.addAction(copy)
        self.problem.hide()
        self.pick_button = QPushButton("Choose the weights file…")
        self.pick_button.setToolTip(f"Use a copy of {zoo.default_entry().filename} you already have")
        self.pick_button.clicked.connect(self.choose_weights)
        self.pick_button.hide()
        self.fast = QCheckBox("Fast inference (ONNX Runtime)")
        self.fast.setToolTip(
            "Run this model with ONNX Runtime (TensorRT, then CUDA, then the CPU). A PyTorch model is "
            "exported once, checked and cached; the answers stay the same."
        )
        self.fast.setChecked(self.model.fast)
        self.fast.toggled.connect(self.model.set_fast)
        self.model.fast_changed.connect(self.fast.setChecked)
        self.model.changed.connect(self._show_predictor)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.button)
        row.addWidget(self.label, 1)
        pick_row = QHBoxLayout()
        pick_row.setContentsMargins(0, 0, 0, 0)
        pick_row.addWidget(self.pick_button)
        pick_row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.problem)
        layout.addLayout(pick_row)
        layout.addWidget(self.fast)

    # ---- the model --------------------------------------------------------------------------------

    @property
    def predictor(self) -> Predictor | None:
        return self.model.predictor

    def set_predictor(self, predictor: Predictor | None) -> None:
        self.model.set_predictor(predictor)

    def _show_predictor(self, predictor: Predictor | None) -> None:
        if predictor is None:
            self.label.setText(NO_MODEL)
            self.label.setToolTip("")
        else:
            self.label.setText(model_title(predictor))
            self.label.setToolTip(model_details(predictor))
            self._show_problem("")
        self.predictorChanged.emit(predictor)

    # ---- loading ----------------------------------------------------------------------------------

    def load(self, spec: str, allow_download: bool = False) -> None:
        """Load a model in the background; offer a download when torchvision's weights are missing."""
        if self.is_busy():
            return
        self._spec = spec
        self._show_problem("")
        if allow_download:
            entry = zoo.default_entry()
            self.label.setText(f"downloading {entry.filename} ({entry.bytes / 1e6:.0f} MB) from {entry.url}…")
        else:
            self.label.setText(f"loading {source_title(spec) or spec}…")
        job = self.new_job(_load_job, spec, allow_download)
        job.yielded.connect(self._on_loaded)
        job.progress.connect(self._on_progress)
        job.errored.connect(lambda error: self._on_failed(spec, error, allow_download))
        # A download can be cancelled; loading a file cannot be cut short, so it has no Cancel.
        self.progress.begin(cancellable=allow_download, label="downloading" if allow_download else "",
                            describe=megabytes_text)  # busy until bytes arrive
        job.start()

    def load_torchvision(self) -> None:
        """torchvision's ImageNet AlexNet: from this computer, else the download is offered."""
        self.load("torchvision", allow_download=False)

    def is_loading(self) -> bool:
        return self.is_busy()

    def _on_progress(self, done: int, total: int, message: str) -> None:
        if 0 < total <= done:
            # Every byte is here; the digest is compared, the file renamed into place and loaded.
            self.progress.advance(0, 0, "checking the SHA-256 and loading…")
        else:
            self.progress.advance(done, total)

    def _on_loaded(self, loaded: Loaded) -> None:
        predictor = loaded.predictor
        if loaded.downloaded:
            self.logMessage.emit(f"Downloaded {loaded.downloaded / 1e6:.1f} MB to {predictor.source}; SHA-256 verified", "good")
        self.logMessage.emit(f"Model loaded in {loaded.seconds:.1f} s: {model_title(predictor)} ({predictor.source})", "info")
        lineage = getattr(predictor, "lineage", None)
        if lineage:
            from alexgui.engine.training.init_source import describe_lineage

            origin = describe_lineage(lineage)
            self.label.setToolTip(f"{predictor.source}\n{origin[0].upper()}{origin[1:]}")
            self.logMessage.emit(f"{origin[0].upper()}{origin[1:]}", "info")
        self.set_predictor(predictor)

    def job_done(self, cancelled: bool) -> None:
        self.progress.end()
        if self.predictor is None:
            self.label.setText(NO_MODEL)
        else:
            self._show_predictor_label()

    def _show_predictor_label(self) -> None:
        predictor = self.predictor
        if predictor is not None:
            self.label.setText(model_title(predictor))
            self.label.setToolTip(model_details(predictor))

    def _on_failed(self, spec: str, error: BaseException, allow_download: bool) -> None:
        if isinstance(error, Cancelled):
            # The user pressed Cancel: not an error, and the model stays as it was.
            self._show_problem("Download cancelled; nothing was saved.", error=False)
            self.logMessage.emit(f"Download of {zoo.default_entry().filename} cancelled; nothing was saved", "info")
            return
        message = describe_error(error)
        # The model in use stays: a file that would not load (or weights not here) takes nothing away.
        offline = spec in zoo.ALIASES and weights_not_here(error)
        self._show_problem(message, offer_pick=offline)
        self.logMessage.emit(f"Model not loaded: {message.splitlines()[0]}", "error")
        self.loadFailed.emit(message)
        if offline and not allow_download and self.isVisible():  # headless use (tests, scripts): no dialogs
            self._offer_download(spec)

    def _offer_download(self, spec: str) -> None:
        entry = zoo.default_entry()
        answer = QMessageBox.question(
            self,
            "Download the ImageNet weights?",
            f"{entry.title} is not on this computer.\n\nDownload {entry.bytes / 1e6:.0f} MB from\n{entry.url}\n"
            f"to\n{entry.hub_path}?",
        )
        if answer == QMessageBox.StandardButton.Yes:
            # The question runs its own event loop: the loading job may have ended while it was
            # open (issue #19), or may still be ending. Either way, download once it has.
            self.after_job(lambda: self.load(spec, allow_download=True))

    def _show_problem(self, message: str, offer_pick: bool = False, error: bool = True) -> None:
        """The message under the name, wrapped; empty hides it. `offer_pick` adds the button that
        picks the weights file by hand."""
        self.failure = message if error else ""
        self.problem.setObjectName("errorMessage" if error else "hint")
        self.problem.style().unpolish(self.problem)  # the style sheet rule follows the object name
        self.problem.style().polish(self.problem)
        self.problem.setText(breakable_html(message))
        self.problem.setVisible(bool(message))
        self.pick_button.setVisible(offer_pick)

    # ---- dialogs ----------------------------------------------------------------------------------

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", "", "Models (*.safetensors *.onnx *.pth *.pt);;All files (*)")
        if path:
            self.load(path)

    def _choose_run(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a run folder")
        if path:
            self.load(path)

    def choose_weights(self) -> None:
        """torchvision's weights from a file the user has (offline, or downloaded elsewhere)."""
        entry = zoo.default_entry()
        path, _ = QFileDialog.getOpenFileName(self, f"Choose {entry.filename}", "", "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            self.load(path)

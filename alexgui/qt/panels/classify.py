"""Classify images by dropping them (paper, Figure 4 left: the top 5 with probability bars).

Drop files or folders on the panel (or anywhere on the main window, which forwards them to
`classify_paths`), open them from a dialog, or paste an image. Each image gets a card: thumbnail,
top-5 classes as horizontal bars, the true class highlighted when its folder or file name tells it,
and the inference time. A file that is not an image gets a card saying why; the rest carry on.
Inference runs on a worker thread; big drops show progress and can be cancelled.

`ModelChooser` (also used by the retrieval panel) picks the model: a checkpoint, a run folder, an
ONNX file, or torchvision's ImageNet AlexNet from the model zoo. It is a view of an ExplorerModel:
given the explorer's, every chooser and panel shows and uses the same model.
"""

from __future__ import annotations

import html
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QFont,
    QFontMetrics,
    QImage,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.inference.predict import (
    IMAGE_FILE_FILTER,
    Classified,
    Predictor,
    classify_files,
    classify_image,
    expand_inputs,
)
from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.model import zoo
from alexgui.errors import Cancelled
from alexgui.qt.explorer_model import ExplorerModel
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.job_progress import JobProgress, megabytes_text
from alexgui.qt.panels.filters import numpy_to_qimage
from alexgui.qt.workers import describe_error

THUMB = 96
BAR_BLUE = QColor(70, 120, 200)
BAR_GREEN = QColor(60, 160, 80)
ERROR_RED = "#b3261e"


# ---- the model chooser ------------------------------------------------------------------------


def _load_job(spec: str, allow_download: bool, stop: threading.Event, progress: Callable[..., None]) -> Predictor:
    def bytes_progress(done: int, total: int) -> None:
        progress(done, total, "downloading")

    return load_predictor(spec, progress=bytes_progress, stop=stop, allow_download=allow_download)


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
    """A button with a menu of model sources and a label naming the model of `model` (its own
    ExplorerModel when none is given); a model loaded here is set there."""

    predictorChanged = Signal(object)  # Predictor, whoever set it
    loadFailed = Signal(str)

    def __init__(self, parent: QWidget | None = None, model: ExplorerModel | None = None) -> None:
        super().__init__(parent)
        self.model = model if model is not None else ExplorerModel(self)
        self.failure = ""  # the last load error, for display and tests
        self.button = QToolButton()
        self.button.setText("Model")
        self.button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.button)
        menu.addAction("Checkpoint or ONNX file…", self._choose_file)
        menu.addAction("Run folder…", self._choose_run)
        menu.addSeparator()
        menu.addAction("torchvision ImageNet AlexNet", lambda: self.load("torchvision", allow_download=False))
        menu.addAction("torchvision weights file…", self._choose_weights)
        self.button.setMenu(menu)
        self.label = QLabel("no model")
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = JobProgress()
        self.progress.bar.setMaximumWidth(160)
        self.progress.cancel_requested.connect(self.cancel)
        self.cancel_button = self.progress.cancel_button
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
        row.addWidget(self.progress)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.fast)

    @property
    def predictor(self) -> Predictor | None:
        return self.model.predictor

    def set_predictor(self, predictor: Predictor | None) -> None:
        self.model.set_predictor(predictor)

    def _show_predictor(self, predictor: Predictor | None) -> None:
        if predictor is None:
            self.label.setText("no model")
        else:
            name = Path(predictor.source).name or predictor.source
            self.label.setText(f"{name} · {predictor.arch} · {len(predictor.class_names)} classes")
            self.label.setToolTip(f"{predictor.source}\nfingerprint {predictor.fingerprint}")
        self.predictorChanged.emit(predictor)

    def load(self, spec: str, allow_download: bool = False) -> None:
        """Load a model in the background; offer a download when torchvision's weights are missing."""
        if self.is_busy():
            return
        self.label.setText(f"loading {Path(spec).name or spec}…")
        job = self.new_job(_load_job, spec, allow_download)
        job.yielded.connect(self.set_predictor)
        job.progress.connect(self._on_progress)
        job.errored.connect(lambda error: self._on_failed(spec, error, allow_download))
        self.progress.begin(cancellable=allow_download, describe=megabytes_text)  # busy until bytes arrive
        job.start()

    def is_loading(self) -> bool:
        return self.is_busy()

    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress.advance(done, total)

    def job_done(self, cancelled: bool) -> None:
        self.progress.end()
        if self.predictor is None:
            first = self.failure.splitlines()[0] if self.failure else ""
            self.label.setText(f"<span style='color:{ERROR_RED}'>{first}</span>" if first else "no model")
            self.label.setToolTip(self.failure)

    def _on_failed(self, spec: str, error: BaseException, allow_download: bool) -> None:
        if isinstance(error, Cancelled):
            return  # the user pressed Cancel (a download): nothing to report, the model stays as it was
        message = describe_error(error)
        self.failure = message
        self.model.set_predictor(None)  # as before the model was shared: a failed load leaves no model
        self.loadFailed.emit(message)
        if not self.isVisible():  # headless use (tests, scripts): no dialogs, the signal says it all
            return
        if spec in zoo.ALIASES and not allow_download and weights_not_here(error):
            entry = zoo.default_entry()
            answer = QMessageBox.question(
                self,
                "Download the ImageNet weights?",
                f"{entry.title} is not on this computer.\n\nDownload {entry.bytes / 1e6:.0f} MB from\n{entry.url}?",
            )
            if answer == QMessageBox.StandardButton.Yes:
                # The question runs its own event loop: the loading job may have ended while it was
                # open (issue #19), or may still be ending. Either way, download once it has.
                self.after_job(lambda: self.load(spec, allow_download=True))
                return
        QMessageBox.warning(self, "Model", message)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", "", "Models (*.safetensors *.onnx *.pth *.pt);;All files (*)")
        if path:
            self.load(path)

    def _choose_run(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a run folder")
        if path:
            self.load(path)

    def _choose_weights(self) -> None:
        entry = zoo.default_entry()
        path, _ = QFileDialog.getOpenFileName(self, f"Choose {entry.filename}", "", "PyTorch weights (*.pth *.pt)")
        if path:
            self.load(path)


# ---- one image's card -------------------------------------------------------------------------


class ProbabilityBars(QWidget):
    """Top-k classes as horizontal bars; the true class green, the others blue."""

    ROW = 18

    def __init__(self, result: Classified, class_names: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = result
        self.rows = [(t.label, t.prob, t.index == result.true_index) for t in result.top]
        if result.true_index is not None and all(t.index != result.true_index for t in result.top):
            self.rows.append((f"{class_names[result.true_index]} (true)", result.true_prob or 0.0, True))
        self.setMinimumHeight(self.ROW * len(self.rows) + 2)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(360, self.ROW * len(self.rows) + 2)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        width = self.width()
        label_w = int(width * 0.42)
        bold = QFont(self.font())
        bold.setBold(True)
        percent_w = QFontMetrics(bold).horizontalAdvance("100.0%") + 2  # the widest it gets, in bold
        bar_w = width - label_w - percent_w - 4
        text_color = self.palette().windowText().color()
        for row, (label, prob, is_true) in enumerate(self.rows):
            y = row * self.ROW + 1
            font = QFont(self.font())
            font.setBold(is_true)
            painter.setFont(font)
            painter.setPen(BAR_GREEN.darker(130) if is_true else text_color)
            painter.drawText(QRectF(0, y, label_w - 6, self.ROW), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             painter.fontMetrics().elidedText(label, Qt.TextElideMode.ElideRight, label_w - 6))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 18))
            painter.drawRoundedRect(QRectF(label_w, y + 3, bar_w, self.ROW - 6), 2, 2)
            painter.setBrush(BAR_GREEN if is_true else BAR_BLUE)
            painter.drawRoundedRect(QRectF(label_w, y + 3, max(1.0, bar_w * prob), self.ROW - 6), 2, 2)
            painter.setPen(text_color)
            painter.drawText(QRectF(label_w + bar_w + 4, y, percent_w, self.ROW),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             f"{100 * prob:.1f}%")
        painter.end()


class ResultCard(QFrame):
    """One image: thumbnail, name, bars (or the reason it could not be classified), time."""

    def __init__(self, result: Classified, class_names: Sequence[str], crops: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = result
        self.setFrameShape(QFrame.Shape.StyledPanel)
        thumb = QLabel()
        thumb.setFixedSize(THUMB, THUMB)
        thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if result.image is not None:
            pix = QPixmap.fromImage(numpy_to_qimage(result.image)).scaled(
                THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            thumb.setPixmap(pix)
        else:
            thumb.setText("✕")
            thumb.setStyleSheet(f"color: {ERROR_RED}; font-size: 28px; border: 1px dashed {ERROR_RED};")
        # A file name is one long word: let it wrap after its underscores, hyphens and dots too.
        breakable = re.sub(r"([_.\-])", "\\1\u200b", html.escape(Path(result.path).name))
        title = QLabel(f"<b>{breakable}</b>")
        title.setToolTip(result.path)
        # Every text wraps: the card must fit a narrow side dock (about 380 pixels at 1280x800).
        title.setWordWrap(True)
        title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        right = QVBoxLayout()
        right.setSpacing(2)
        right.addWidget(title)
        if result.error is not None:
            self.message = QLabel(result.error)
            self.message.setWordWrap(True)
            self.message.setStyleSheet(f"color: {ERROR_RED};")
            right.addWidget(self.message)
        else:
            self.bars = ProbabilityBars(result, class_names)
            right.addWidget(self.bars)
            truth = ""
            if result.true_index is not None:
                hit = result.top and result.top[0].index == result.true_index
                truth = f" · true class <b>{class_names[result.true_index]}</b> {'✓' if hit else '✗'}"
            self.message = QLabel(f"<span style='color:#777'>{result.ms:.0f} ms · {crops}</span>{truth}")
            self.message.setWordWrap(True)
            right.addWidget(self.message)
        right.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addWidget(thumb, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(right, 1)


# ---- the panel --------------------------------------------------------------------------------


def _classify_job(
    predictor: Predictor,
    items: list[str | tuple[str, np.ndarray]],
    ten_crop: bool,
    stop: threading.Event,
    progress: Callable[[int, int, str], None],
) -> Iterator[Classified]:
    """Worker side: files (by path) and pasted images (name, u8), one result each, in order."""
    total = len(items)
    progress(0, total, "")
    for done, item in enumerate(items, start=1):
        if stop.is_set():
            return
        if isinstance(item, tuple):
            name, u8 = item
            yield classify_image(predictor, name, u8, ten_crop=ten_crop)
        else:
            yield from classify_files(predictor, [item], ten_crop=ten_crop, stop=stop)
        progress(done, total, Path(item[0] if isinstance(item, tuple) else item).name)


class ClassifyPanel(JobMixin, QWidget):
    """See the module docstring."""

    imageClassified = Signal(object)  # Classified, as each arrives
    finished = Signal(bool)  # emitted in the GUI thread when a batch ends; True if cancelled

    def __init__(self, parent: QWidget | None = None, model: ExplorerModel | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.results: list[Classified] = []
        self._queue: list[str | tuple[str, np.ndarray]] = []
        self._pasted = 0

        self.chooser = ModelChooser(model=model)
        self.chooser.predictorChanged.connect(self._on_predictor)
        self.open_button = QPushButton("Open images…")
        self.open_button.clicked.connect(self._choose_files)
        self.paste_button = QPushButton("Paste")
        self.paste_button.setToolTip("Classify the image on the clipboard (Ctrl+V)")
        self.paste_button.clicked.connect(self.paste)
        QShortcut(QKeySequence.StandardKey.Paste, self, activated=self.paste)
        self.crops = QComboBox()
        self.crops.addItems(["Centre crop", "10 crops"])
        self.crops.setToolTip("10 crops: the four corners and the centre, each with its reflection; "
                              "the softmax averaged (paper, section 4.1)")
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        bar = QHBoxLayout()
        bar.addWidget(self.open_button)
        bar.addWidget(self.paste_button)
        bar.addWidget(self.crops)
        bar.addStretch(1)
        bar.addWidget(self.clear_button)

        self.progress = JobProgress()
        self.progress.cancel_requested.connect(self.cancel)
        self.cancel_button = self.progress.cancel_button

        self.hint = QLabel("Drop images or folders here, open them, or paste an image.")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setWordWrap(True)  # the dock can be narrower than the sentence
        self.hint.setStyleSheet("color: #777; padding: 24px; border: 2px dashed #bbb; border-radius: 8px;")
        self.cards = QWidget()
        self.cards_layout = QVBoxLayout(self.cards)
        self.cards_layout.setContentsMargins(0, 0, 0, 0)
        self.cards_layout.addWidget(self.hint)
        self.cards_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.cards)
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # cards fit the width

        layout = QVBoxLayout(self)
        layout.addWidget(self.chooser)
        layout.addLayout(bar)
        layout.addWidget(self.progress)
        layout.addWidget(self.scroll, 1)

    # ---- public ---------------------------------------------------------------------------------

    @property
    def predictor(self) -> Predictor | None:
        return self.chooser.predictor

    def set_predictor(self, predictor: Predictor | None) -> None:
        """Use this model (e.g. a copy of the training run's current weights)."""
        self.chooser.set_predictor(predictor)

    def classify_paths(self, paths: Sequence[str | Path]) -> None:
        """Files are tried whatever their suffix; folders contribute the image files below them."""
        items = expand_inputs(paths)
        if not items:
            self.hint.setText("No image files in what was dropped.")
            return
        self._enqueue(list(items))

    def classify_arrays(self, images: Sequence[tuple[str, np.ndarray]]) -> None:
        """Decoded (256, 256, 3) uint8 images with a display name each."""
        self._enqueue(list(images))

    def paste(self) -> None:
        """Classify the clipboard's image, or the files it holds."""
        mime = QApplication.clipboard().mimeData()
        if mime is not None and mime.hasUrls():
            files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            if files:
                self.classify_paths(files)
                return
        image = QApplication.clipboard().image()
        if image.isNull():
            self.hint.setText("The clipboard holds no image.")
            return
        self.classify_qimage(image)

    def classify_qimage(self, image: QImage) -> None:
        """An in-memory image (clipboard): decoded through the same path as files (load_256)."""
        self._pasted += 1
        name = f"pasted image {self._pasted}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pasted.png"
            if not image.save(str(path), "PNG"):
                self._add_card(Classified(name, error="could not read the clipboard image"))
                return
            try:
                u8 = load_256(path)
            except ImageError as e:
                self._add_card(Classified(name, error=e.reason))
                return
        self.classify_arrays([(name, u8)])

    def cancel(self) -> None:
        self._queue.clear()
        super().cancel()

    def clear(self) -> None:
        self.results.clear()
        while self.cards_layout.count() > 2:
            item = self.cards_layout.takeAt(1)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.hint.show()

    def card_widgets(self) -> list[ResultCard]:
        return [self.cards_layout.itemAt(i).widget() for i in range(1, self.cards_layout.count() - 1)]  # type: ignore[misc]

    def shutdown(self, msecs: int = 30000) -> None:
        self._queue.clear()
        super().shutdown(msecs)
        self.chooser.shutdown(msecs)

    # ---- work -----------------------------------------------------------------------------------

    def _enqueue(self, items: list[str | tuple[str, np.ndarray]]) -> None:
        self._queue.extend(items)
        if self.predictor is None:
            self.hint.setText(f"{len(self._queue)} image(s) waiting: choose a model first (Model menu above).")
            return
        self._start_next()

    def _start_next(self) -> None:
        if self.is_busy() or not self._queue or self.predictor is None:
            return
        items, self._queue = self._queue, []
        self.hint.hide()
        if len(items) > 1:  # one image is quick: no bar
            self.progress.begin(len(items))
        job = self.new_job(_classify_job, self.predictor, items, self.crops.currentIndex() == 1)
        job.yielded.connect(self._on_result)
        job.progress.connect(lambda done, total, _msg: self.progress.advance(done, total))
        job.errored.connect(lambda e: self._add_card(Classified("(classification stopped)", error=describe_error(e))))
        job.start()

    def _on_result(self, result: Classified) -> None:
        self._add_card(result)
        self.imageClassified.emit(result)

    def _add_card(self, result: Classified) -> None:
        self.results.append(result)
        names = self.predictor.class_names if self.predictor is not None else []
        crops = "10 crops" if self.crops.currentIndex() == 1 else "centre crop"
        card = ResultCard(result, names, crops)
        # Newest first, just below the (hidden) hint.
        self.cards_layout.insertWidget(1, card)

    def job_done(self, cancelled: bool) -> None:
        self.progress.end()
        self.finished.emit(cancelled)
        self._start_next()

    def _on_predictor(self, predictor: Predictor | None) -> None:
        if predictor is not None and self._queue:
            self._start_next()

    def _choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Classify images", "", IMAGE_FILE_FILTER)
        if files:
            self.classify_paths(files)

    # ---- drops ----------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.classify_paths(files)
        elif mime.hasImage():
            event.acceptProposedAction()
            self.classify_qimage(QImage(mime.imageData()))

"""Classify images by dropping them (paper, Figure 4 left: the top 5 with probability bars).

Drop files or folders on the panel (or anywhere on the main window, which forwards them to
`classify_paths`), open them from a dialog, or paste an image. Each image gets a card
(classify_cards.py): thumbnail, top-5 classes as horizontal bars, the true class highlighted when its
folder or file name tells it, and the inference time. A file that is not an image gets a card saying
why; the rest carry on. Inference runs on a worker thread; big drops show progress and can be
cancelled. The model is chosen above the cards (model_chooser.py: also the retrieval panel's).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDropEvent,
    QImage,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
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
from alexgui.qt.explorer_model import ExplorerModel
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.job_progress import JobProgress
from alexgui.qt.panels.classify_cards import ERROR_RED, ResultCard
from alexgui.qt.panels.model_chooser import ModelChooser
from alexgui.qt.workers import describe_error

__all__ = ["ERROR_RED", "ClassifyPanel", "ModelChooser"]  # the chooser and the colour: used by other panels


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
    explainRequested = Signal(object)  # Classified: its card's Explain button was pressed

    def __init__(self, parent: QWidget | None = None, model: ExplorerModel | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.results: list[Classified] = []
        self._queue: list[str | tuple[str, np.ndarray]] = []
        self._pasted = 0

        self.chooser = ModelChooser(model=model)
        self.chooser.predictorChanged.connect(self._on_predictor)
        # Short words: the row must fit the side dock (about 380 pixels at 1280x800) without widening it.
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Classify image files (or drop them, or whole folders, on this panel)")
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
        layout.setContentsMargins(6, 6, 6, 6)
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
        if result.error is None:
            card.explain_button.clicked.connect(lambda: self.explainRequested.emit(result))
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

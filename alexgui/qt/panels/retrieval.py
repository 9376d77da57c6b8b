"""Nearest-neighbour retrieval (paper, Figure 4 right): gallery images closest to a query in fc7.

Choose a gallery folder and build its index (fc7 features of every image, on a worker thread, with
progress and cancel); the index is kept in the cache folder and reused while it matches the model
and the folder; when either changed the panel says why and offers to rebuild. Drop or pick a query
image: its k nearest gallery images appear with their Euclidean distances; click one to view it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QIcon, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.inference.predict import IMAGE_FILE_FILTER, Predictor
from alexgui.engine.inference.retrieval import (
    GalleryIndex,
    RetrievalError,
    build_index,
    load_index,
    nearest,
    query_features,
    save_index,
    stale_reasons,
)
from alexgui.errors import Cancelled
from alexgui.paths import cache_dir
from alexgui.qt.explorer_model import ExplorerModel
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.job_progress import JobProgress
from alexgui.qt.panels.classify_cards import ERROR_RED
from alexgui.qt.panels.model_chooser import ModelChooser
from alexgui.qt.tile_grid import numpy_to_qimage
from alexgui.qt.workers import describe_error

THUMB = 112


def default_index_location(folder: str | Path) -> Path:
    """Where the app keeps the index of a gallery folder (one per folder, in the cache)."""
    key = hashlib.sha1(str(Path(folder).resolve()).encode("utf-8")).hexdigest()[:16]
    return cache_dir() / "indexes" / f"{Path(folder).name or 'gallery'}-{key}"


def _build_job(
    predictor: Predictor, folder: str, out: Path, stop: threading.Event, progress: Callable[..., None]
) -> GalleryIndex | None:
    try:
        index = build_index(predictor, folder, progress=lambda d, t: progress(d, t, "indexing"), stop=stop)
    except Cancelled:
        return None
    save_index(index, out)
    return index


def _query_job(
    predictor: Predictor, index: GalleryIndex, query: str, k: int, stop: threading.Event, progress: Callable[..., None]
) -> dict[str, Any]:
    feats, errors = query_features(predictor, [query])
    if errors[0] is not None:
        raise RetrievalError(f"{query}: {errors[0]}")
    found = nearest(index, feats, k)[0]
    thumbs = []
    for path, _ in found:
        try:
            thumbs.append(load_256(path, size=THUMB))
        except ImageError:
            thumbs.append(None)  # the file changed since indexing; the card says so
    return {"query": query, "image": load_256(query, size=THUMB), "neighbours": found, "thumbs": thumbs}


class ImageViewer(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.caption)

    def show_image(self, path: str, caption: str) -> None:
        pix = QPixmap(path)
        if pix.isNull():
            self.picture.setText(f"{path}: cannot be shown")
        else:
            self.picture.setPixmap(pix.scaled(640, 640, Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation))
        self.setWindowTitle(Path(path).name)
        self.caption.setText(caption)
        self.show()
        self.raise_()


class RetrievalPanel(JobMixin, QWidget):
    """See the module docstring."""

    indexReady = Signal(object)  # GalleryIndex (GUI thread)
    resultsReady = Signal(object)  # {"query", "neighbours": [(path, distance)], ...}
    busyChanged = Signal(bool)
    mapRequested = Signal(object)  # GalleryIndex: "Map…", the index's images placed in 2-D by their fc7

    def __init__(self, parent: QWidget | None = None, model: ExplorerModel | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.index: GalleryIndex | None = None
        self.folder: str | None = None
        self.index_path: Path | None = None
        self.results: list[tuple[str, float]] = []
        self.stale: list[str] = []
        self.error = ""
        self._pending_query: str | None = None
        self.viewer = ImageViewer(self)

        self.chooser = ModelChooser(model=model)
        self.chooser.predictorChanged.connect(lambda _: self._check_stale())

        self.folder_button = QPushButton("Gallery…")
        self.folder_button.setToolTip("Choose the folder of images to search (or drop it on this panel)")
        self.folder_button.clicked.connect(self._choose_folder)
        self.open_index_button = QPushButton("Open index…")
        self.open_index_button.clicked.connect(self._choose_index)
        self.build_button = QPushButton("Build index")
        self.build_button.clicked.connect(self.build)
        self.map_button = QPushButton("Map…")
        self.map_button.setToolTip("The index's images on a 2-D map of the fc7 space (t-SNE or PCA): similar "
                                   "images side by side, classes in clusters")
        self.map_button.setEnabled(False)
        self.map_button.clicked.connect(lambda: self.index is not None and self.mapRequested.emit(self.index))
        self.indexReady.connect(lambda _index: self.map_button.setEnabled(True))
        self.status = QLabel("Choose a gallery folder, then build its index.")
        self.status.setWordWrap(True)
        gallery = QHBoxLayout()
        gallery.addWidget(self.folder_button)
        gallery.addWidget(self.open_index_button)
        gallery.addStretch(1)
        index_row = QHBoxLayout()  # a row of its own: four buttons in one would widen the 380-pixel dock
        index_row.addWidget(self.build_button)
        index_row.addWidget(self.map_button)
        index_row.addStretch(1)

        self.progress = JobProgress()
        self.progress.cancel_requested.connect(self.cancel)
        self.cancel_button = self.progress.cancel_button

        self.query_thumb = QLabel("Drop a query\nimage here")
        self.query_thumb.setFixedSize(THUMB, THUMB)
        self.query_thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.query_thumb.setStyleSheet("color: #777; border: 2px dashed #bbb; border-radius: 6px;")
        self.query_button = QPushButton("Query image…")
        self.query_button.clicked.connect(self._choose_query)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 64)
        self.k_spin.setValue(8)
        self.k_spin.setPrefix("k = ")
        self.query_caption = QLabel()
        self.query_caption.setWordWrap(True)
        qcol = QVBoxLayout()
        # The button and k one above the other: side by side beside the thumbnail they asked for
        # more than the side dock's width at 1280x800.
        for widget in (self.query_button, self.k_spin):
            qrow = QHBoxLayout()
            qrow.addWidget(widget)
            qrow.addStretch(1)
            qcol.addLayout(qrow)
        qcol.addWidget(self.query_caption)
        qcol.addStretch(1)
        query = QHBoxLayout()
        query.addWidget(self.query_thumb)
        query.addLayout(qcol, 1)

        self.grid_holder = QWidget()
        self.grid = QGridLayout(self.grid_holder)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.neighbour_buttons: list[QToolButton] = []
        scroll = QScrollArea()
        scroll.setWidget(self.grid_holder)
        scroll.setWidgetResizable(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)  # the side dock is about 380 pixels wide at 1280x800
        layout.addWidget(self.chooser)
        layout.addLayout(gallery)
        layout.addLayout(index_row)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addLayout(query)
        layout.addWidget(scroll, 1)

    # ---- model and gallery ----------------------------------------------------------------------

    @property
    def predictor(self) -> Predictor | None:
        return self.chooser.predictor

    def set_predictor(self, predictor: Predictor | None) -> None:
        self.chooser.set_predictor(predictor)

    def set_gallery(self, folder: str | Path, index_path: str | Path | None = None) -> None:
        """Use this gallery folder; load its index when one exists (the default place or index_path)."""
        self.folder = str(Path(folder).resolve())
        self.index_path = Path(index_path) if index_path is not None else default_index_location(folder)
        self.index = None
        self.map_button.setEnabled(False)
        if (self.index_path / "index.json").exists():
            self.open_index(self.index_path)
        else:
            self.status.setText(f"Gallery {self.folder}: no index yet. Build one (fc7 features of every image).")
            self.build_button.setText("Build index")

    def open_index(self, path: str | Path) -> bool:
        try:
            index = load_index(path)
        except RetrievalError as e:
            self._show_error(str(e))
            return False
        self.index = index
        self.index_path = Path(path)
        self.folder = index.root
        self._check_stale()
        self.indexReady.emit(index)
        return True

    def _check_stale(self) -> None:
        if self.index is None:
            return
        fingerprint = self.predictor.fingerprint if self.predictor is not None else None
        self.stale = stale_reasons(self.index, fingerprint)
        text = (f"Index of {self.index.root}: {len(self.index)} images"
                f"{f', {len(self.index.skipped)} skipped' if self.index.skipped else ''} "
                f"({self.index.storage_dtype}).")
        if self.stale:
            text += f"<br><span style='color:{ERROR_RED}'>Out of date: " + "; ".join(self.stale) + "</span>"
        self.build_button.setText("Rebuild index")
        self.status.setText(text)

    def build(self) -> None:
        """(Re)build the gallery's index with the current model, in the background."""
        if self.folder is None:
            self._show_error("Choose a gallery folder first.")
            return
        if self.predictor is None:
            self._show_error("Choose a model first (Model menu above).")
            return
        if self.is_busy():
            return
        out = self.index_path or default_index_location(self.folder)
        self.index_path = out
        self.status.setText(f"Indexing {self.folder}…")
        self._start(self._on_index_built, _build_job, self.predictor, self.folder, out)
        self.progress.begin(label="indexing")

    def _on_index_built(self, index: GalleryIndex | None) -> None:
        if index is None:
            return
        self.index = index
        self._check_stale()
        self.indexReady.emit(index)

    # ---- queries --------------------------------------------------------------------------------

    def query(self, path: str | Path) -> None:
        """The k nearest gallery images to the image file `path`."""
        if self.index is None:
            self._show_error("Build or open a gallery index first.")
            return
        if self.predictor is None:
            self._show_error("Choose a model first (Model menu above).")
            return
        if self.is_busy():
            self._pending_query = str(path)
            return
        self.query_caption.setText(f"Searching {len(self.index)} images for {Path(path).name}…")
        self._start(self._on_results, _query_job, self.predictor, self.index, str(path), self.k_spin.value())

    def _on_results(self, found: dict[str, Any]) -> None:
        self.results = list(found["neighbours"])
        if found["image"] is not None:
            self.query_thumb.setPixmap(QPixmap.fromImage(numpy_to_qimage(found["image"])))
            self.query_thumb.setStyleSheet("")
        self.query_caption.setText(f"<b>{Path(found['query']).name}</b> · {len(self.results)} nearest of "
                                   f"{len(self.index) if self.index else 0} by Euclidean distance in fc7")
        for button in self.neighbour_buttons:
            button.deleteLater()
        self.neighbour_buttons = []
        cols = max(1, (self.width() - 24) // (THUMB + 16))
        for i, ((path, dist), thumb) in enumerate(zip(self.results, found["thumbs"])):
            button = QToolButton()
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            button.setIconSize(QSize(THUMB, THUMB))
            if thumb is not None:
                button.setIcon(QIcon(QPixmap.fromImage(numpy_to_qimage(thumb))))
            button.setText(f"{dist:.4g}")
            button.setToolTip(f"{path}\ndistance {dist:.4f}")
            button.setAutoRaise(True)
            button.clicked.connect(lambda _=False, p=path, d=dist, r=i: self.viewer.show_image(
                p, f"{p}<br>neighbour {r + 1} · distance {d:.4f}"))
            self.grid.addWidget(button, i // cols, i % cols)
            self.neighbour_buttons.append(button)
        self.resultsReady.emit(found)

    # ---- jobs -----------------------------------------------------------------------------------

    def _start(self, on_result: Callable[[Any], None], fn: Callable[..., Any], *args: Any) -> None:
        job = self.new_job(fn, *args)
        job.yielded.connect(on_result)
        job.progress.connect(self._on_progress)
        job.errored.connect(lambda e: self._show_error(describe_error(e)))
        self.error = ""
        self.busyChanged.emit(True)
        job.start()

    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress.advance(done, total, message)

    def job_done(self, cancelled: bool) -> None:
        self.progress.end()
        if cancelled:
            self.status.setText("Indexing cancelled; the previous index (if any) is unchanged.")
            self._check_stale()
        self.busyChanged.emit(False)
        if self._pending_query is not None:
            path, self._pending_query = self._pending_query, None
            self.query(path)

    def shutdown(self, msecs: int = 30000) -> None:
        super().shutdown(msecs)
        self.chooser.shutdown(msecs)

    def _show_error(self, message: str) -> None:
        self.error = message
        self.query_caption.setText(f"<span style='color:{ERROR_RED}'>{message}</span>")

    # ---- dialogs and drops ----------------------------------------------------------------------

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Gallery folder")
        if folder:
            self.set_gallery(folder)

    def _choose_index(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an index folder (made by `alexgui index`)")
        if folder:
            self.open_index(folder)

    def _choose_query(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Query image", "", IMAGE_FILE_FILTER)
        if path:
            self.query(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not files:
            return
        event.acceptProposedAction()
        if Path(files[0]).is_dir():
            self.set_gallery(files[0])
        else:
            self.query(files[0])

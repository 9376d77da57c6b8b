"""Feature space: a map of a gallery index's fc7 space, every image a point in 2-D (t-SNE or PCA),
coloured by class (its folder), near images near each other.

"Compute" runs the engine's feature_space.compute_map on a worker (progress, time left, Cancel); a
current map cached next to the index is shown as soon as the index is set. The map view
(feature_space_view.py) draws points, and thumbnails once zoomed in. Clicking a point or a thumbnail
emits `image_clicked(path)` and shows, at the side, the image, its 8 nearest neighbours in fc7 (the
gallery's exact search) and, when a predictor is set, its classification; clicking a neighbour goes
on from there.

Public API: set_index(index | None), set_predictor(predictor | None), compute(), select(row),
image_clicked(str); mapReady(FeatureMap), detailsReady(dict) and busyChanged(bool) for whoever follows.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.inference.gallery import GalleryIndex, search
from alexgui.engine.inference.predict import Classified, Predictor, classify_files
from alexgui.engine.understand.feature_space import METHOD_NAMES, METHODS, FeatureMap, cache_path, cached_map, compute_map
from alexgui.errors import Cancelled
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.job_progress import JobProgress
from alexgui.qt.model_names import short_class_label
from alexgui.qt.panels.classify_cards import ERROR_RED, MUTED
from alexgui.qt.panels.feature_space_view import THUMB, MapView
from alexgui.qt.tile_grid import numpy_to_qimage
from alexgui.qt.workers import Job, describe_error

PICTURE = 160
NEIGHBOURS = 8
WIDE = 720  # from this width the details sit beside the map, below it in a narrower dock
BUTTON = THUMB + 28  # a neighbour's button: the thumbnail and the theme's padding (5px 12px) and border
# The details' width beside the map: four neighbours a row, the grid's spacing, the margin and a scroll bar.
SIDE = 4 * BUTTON + 3 * 2 + 4 + 24


def _map_job(index: GalleryIndex, method: str, seed: int, cache_only: bool, stop: threading.Event,
             progress: Callable[..., None]) -> FeatureMap | None:
    try:
        if cache_only:
            return cached_map(index, method, seed, stop)
        return compute_map(index, method, seed, progress=lambda d, t: progress(d, t, METHOD_NAMES[method]), stop=stop)
    except Cancelled:
        return None


def _details_job(index: GalleryIndex, row: int, predictor: Predictor | None, stop: threading.Event,
                 progress: Callable[..., None]) -> dict[str, Any]:
    """One image's picture, its nearest neighbours by fc7 with their thumbnails, its classification."""
    path = index.paths[row]
    found, distances = search(index.features, index.sq_norms, index.features[row], NEIGHBOURS + 1)
    neighbours = [(int(i), float(d)) for i, d in zip(found[0], distances[0]) if i != row][:NEIGHBOURS]
    out: dict[str, Any] = {"row": row, "path": path, "neighbours": neighbours, "image": None, "error": None,
                           "thumbs": [], "classified": None}
    try:
        out["image"] = load_256(path, size=PICTURE)
    except ImageError as e:
        out["error"] = e.reason
    for i, _ in neighbours:
        if stop.is_set():
            return out
        try:
            out["thumbs"].append(load_256(index.paths[i], size=THUMB))
        except ImageError:
            out["thumbs"].append(None)
    if predictor is not None and out["error"] is None:
        out["classified"] = next(iter(classify_files(predictor, [path], top_k=3)), None)
    return out


class FeatureSpacePanel(JobMixin, QWidget):
    """See the module docstring. Its one job (JobMixin) computes maps; the details of a clicked image
    come from a job of their own, so that clicking while a map is computed still answers."""

    image_clicked = Signal(str)
    mapReady = Signal(object)  # FeatureMap
    detailsReady = Signal(object)  # {"row", "path", "neighbours": [(row, distance)], "classified", ...}
    busyChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index: GalleryIndex | None = None
        self.predictor: Predictor | None = None
        self.map: FeatureMap | None = None
        self.selected: int | None = None
        self.details: dict[str, Any] | None = None
        self.error = ""
        self._switched = False  # a running map was cancelled because another index was set
        self._details_job: Job | None = None
        self._details_running: set[Job] = set()

        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(METHOD_NAMES[m], m)
        self.method.setToolTip("t-SNE keeps neighbourhoods (classes form clusters); PCA shows the two directions "
                               "of largest variance, exact and quick")
        self.seed = QSpinBox()
        self.seed.setRange(0, 9999)
        self.seed.setPrefix("seed ")
        self.seed.setToolTip("t-SNE's seed: the same index, method and seed give the same map")
        self.method.currentIndexChanged.connect(lambda _: self._look_up_cache())
        self.seed.valueChanged.connect(lambda _: self._look_up_cache())
        self.compute_button = QPushButton("Compute")
        self.compute_button.setToolTip("Compute the map of the index's images with this method and seed")
        # The row fits a 380-pixel dock in the app's theme: the seed box may be narrower than its hint
        # (its longest text, "seed 9999", still shows).
        self.seed.setMinimumWidth(100)
        self.compute_button.clicked.connect(self.compute)
        self.view = MapView()
        self.view.pointClicked.connect(self.select)
        self.fit_button = QToolButton()
        self.fit_button.setText("Fit")
        self.fit_button.setToolTip("Show the whole map")
        self.fit_button.clicked.connect(self.view.fit)
        self.status = QLabel("Set a gallery index to map its images.")
        self.status.setWordWrap(True)
        self.progress = JobProgress()
        self.progress.cancel_requested.connect(self.cancel)

        # Vertical until the panel is wide (resizeEvent). Neither part has a minimum width of its own
        # beyond the map's, so that the panel fits a 380-pixel dock whichever way it was last.
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self._build_side())
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setChildrenCollapsible(False)
        controls = QHBoxLayout()
        for w in (self.method, self.seed, self.compute_button, self.fit_button):
            controls.addWidget(w)
        controls.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addWidget(self.splitter, 1)
        self._enable()

    def _build_side(self) -> QWidget:
        self.picture = QLabel("Click a point")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(PICTURE // 2, PICTURE // 2)
        self.caption = QLabel()
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption.setMinimumWidth(1)  # a long path wraps or clips; it never widens the side column
        self.prediction = QLabel()
        self.neighbours_title = QLabel()
        grid_holder = QWidget()
        grid = QGridLayout(grid_holder)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        self.neighbour_buttons: list[QToolButton] = []
        for i in range(NEIGHBOURS):
            button = QToolButton()
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            button.setIconSize(QSize(THUMB, THUMB))
            button.setFixedWidth(BUTTON)  # whatever the style's padding: SIDE is computed from it
            button.setAutoRaise(True)
            button.clicked.connect(lambda _=False, k=i: self._neighbour_clicked(k))
            button.hide()
            grid.addWidget(button, i // 4, i % 4)
            self.neighbour_buttons.append(button)
        side = QWidget()
        column = QVBoxLayout(side)
        column.setContentsMargins(4, 0, 0, 0)
        for w in (self.picture, self.caption, self.prediction, self.neighbours_title, grid_holder):
            column.addWidget(w)
            if isinstance(w, QLabel) and w is not self.picture:
                w.setWordWrap(True)
        column.addStretch(1)
        scroll = QScrollArea()  # the side never sets the panel's minimum height
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        return scroll

    # ---- index, predictor, map -------------------------------------------------------------------

    def set_index(self, index: GalleryIndex | None) -> None:
        """Map this index (None: nothing); a current map cached beside it is shown at once."""
        self._switched = self.is_busy()
        self.cancel()
        self.index = index
        self.view.forget_thumbnails()
        self._show_map(None)
        if index is None:
            self.status.setText("Set a gallery index to map its images.")
        else:
            self.status.setText(f"Index of {index.root}: {len(index)} images. Compute its map.")
            self.after_job(self._look_up_cache)  # once a cancelled map of the last index has ended
        self._enable()

    def set_predictor(self, predictor: Predictor | None) -> None:
        """The model that classifies a clicked image (None: no classification)."""
        self.predictor = predictor
        if self.selected is not None:
            self.select(self.selected, emit=False)

    def current_method(self) -> str:
        return str(self.method.currentData())

    def compute(self) -> None:
        """Compute (or take from the cache) the map by the chosen method and seed, in the background."""
        if self.index is None or self.is_busy():
            return
        method = self.current_method()
        self.status.setText(f"Mapping {len(self.index)} images by {METHOD_NAMES[method]}…")
        self._start_map(cache_only=False)
        self.progress.begin(label=METHOD_NAMES[method])

    def _look_up_cache(self) -> None:
        path = cache_path(self.index, self.current_method(), self.seed.value()) if self.index is not None else None
        if path is not None and path.is_file() and not self.is_busy():
            self._start_map(cache_only=True)

    def _start_map(self, cache_only: bool) -> None:
        index = self.index
        job = self.new_job(_map_job, index, self.current_method(), self.seed.value(), cache_only)
        # Only the current index's map: one for an index since replaced is dropped.
        job.yielded.connect(lambda fmap: self._show_map(fmap) if index is self.index else None)
        job.progress.connect(self.progress.advance)
        job.errored.connect(lambda e: self._show_error(describe_error(e)) if index is self.index else None)
        self.error = ""
        self.busyChanged.emit(True)
        job.start()
        self._enable()

    def job_done(self, cancelled: bool) -> None:
        self.progress.end()
        if cancelled and not self._switched:  # cancelled by set_index: its own text stays
            self.status.setText("Mapping cancelled.")
        self._switched = False
        self._enable()
        self.busyChanged.emit(False)

    def _enable(self) -> None:
        busy = self.is_busy()
        self.compute_button.setEnabled(self.index is not None and not busy)
        self.method.setEnabled(not busy)
        self.seed.setEnabled(not busy)

    def _show_map(self, fmap: FeatureMap | None) -> None:
        self.map = fmap
        self.selected = None
        self._show_details(None)
        self.view.show_map(fmap)
        if fmap is None:
            return
        how = "from the cache beside the index" if fmap.from_cache else "computed"
        self.status.setText(f"{METHOD_NAMES[fmap.method]} map of {len(fmap)} images ({how}). Zoom in for thumbnails; "
                            "click an image for its neighbours.")
        self.mapReady.emit(fmap)

    def _show_error(self, message: str) -> None:
        self.error = message
        self.status.setText(f"<span style='color:{ERROR_RED}'>{html.escape(message)}</span>")

    # ---- a clicked image --------------------------------------------------------------------------

    def select(self, row: int, emit: bool = True) -> None:
        """Show image `row` of the index at the side: picture, neighbours, classification."""
        if self.index is None or not 0 <= row < len(self.index):
            return
        self.selected = row
        path = self.index.paths[row]
        if emit:
            self.image_clicked.emit(path)
        self.view.mark(row, [])
        # The path below the index's folder (the full one on hover): a long path has no spaces to wrap at.
        shown = _below(path, self.index.root)
        name, folder = html.escape(Path(path).name), html.escape(short_class_label(Path(path).parent.name))
        self.caption.setText(f"<b>{name}</b><br>{folder} · image {row + 1} of {len(self.index)}"
                             f"<br><span style='color:{MUTED}'>{html.escape(shown)}</span>")
        self.caption.setToolTip(path)
        self.prediction.setText("Classifying…" if self.predictor is not None else "")
        if self._details_job is not None:
            self._details_job.cancel()  # an older click: its answer is not wanted
        job = Job(_details_job, self.index, row, self.predictor, parent=self)
        job.yielded.connect(self._show_details)
        job.errored.connect(lambda e: self._show_error(describe_error(e)))
        job.done.connect(lambda _c, j=job: self._details_ended(j))
        self._details_job = job
        self._details_running.add(job)
        job.start()

    def _details_ended(self, job: Job) -> None:
        self._details_running.discard(job)
        job.deleteLater()
        if self._details_job is job:
            self._details_job = None

    def _show_details(self, found: dict[str, Any] | None) -> None:
        if found is None:
            self.details = None
            self.picture.setText("Click a point")
            for label in (self.caption, self.prediction, self.neighbours_title):
                label.clear()
            for button in self.neighbour_buttons:
                button.hide()
            return
        if found["row"] != self.selected or self.index is None:
            return  # an older click's answer
        self.details = found
        if found["image"] is not None:
            self.picture.setPixmap(QPixmap.fromImage(numpy_to_qimage(found["image"])))
        else:
            self.picture.setText(f"cannot be shown: {found['error']}")
        self.prediction.setText(_prediction_text(found["classified"]))
        self.neighbours_title.setText(f"{len(found['neighbours'])} nearest in fc7 (Euclidean distance):")
        for button, (row, dist), thumb in zip(self.neighbour_buttons, found["neighbours"], found["thumbs"]):
            button.setIcon(QIcon(QPixmap.fromImage(numpy_to_qimage(thumb))) if thumb is not None else QIcon())
            button.setText(f"{dist:.4g}")
            button.setToolTip(f"{self.index.paths[row]}\ndistance {dist:.4f}")
            button.show()
        for button in self.neighbour_buttons[len(found["neighbours"]):]:
            button.hide()
        self.view.mark(found["row"], [r for r, _ in found["neighbours"]])
        self.detailsReady.emit(found)

    def _neighbour_clicked(self, k: int) -> None:
        if self.details is not None and k < len(self.details["neighbours"]):
            self.select(self.details["neighbours"][k][0])

    # ---- layout, closing ------------------------------------------------------------------------

    def shutdown(self, msecs: int = 30000) -> None:
        super().shutdown(msecs)
        for job in list(self._details_running):
            job.shutdown(msecs)
        self.view.shutdown(msecs)

    def resizeEvent(self, event: QResizeEvent) -> None:
        size = event.size()
        wanted = Qt.Orientation.Horizontal if size.width() >= WIDE else Qt.Orientation.Vertical
        if self.splitter.orientation() != wanted:
            self.splitter.setOrientation(wanted)
            if wanted == Qt.Orientation.Horizontal:
                self.splitter.setSizes([size.width() - SIDE, SIDE])
            else:
                self.splitter.setSizes([size.height() * 3 // 5, size.height() * 2 // 5])
        super().resizeEvent(event)


def _below(path: str, root: str) -> str:
    """`path` relative to the index's folder when it lies inside it, else as it is."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _prediction_text(classified: Classified | None) -> str:
    if classified is None:
        return ""
    if classified.error is not None:
        return f"<span style='color:{ERROR_RED}'>{html.escape(classified.error)}</span>"
    return "Model: " + " · ".join(f"{html.escape(short_class_label(t.label))} {100 * t.prob:.0f}%" for t in classified.top)

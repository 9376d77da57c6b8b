"""The Feature space panel's map view: the points, coloured by class, with a legend; thumbnails where
zoomed in; rings on the clicked image and its neighbours.

Kept apart from the panel (feature_space.py) so that the panel is about the work and this is about
drawing. All points are one ScatterPlotItem, so 10,000 of them pan and zoom smoothly. Once few enough
points are in view that their thumbnails would not pile up (at most MAX_THUMBS), they are drawn as
thumbnails at a constant size on screen, decoded on a worker (one at a time, skipping images panned
out of view meanwhile) and kept in a small cache.
"""

from __future__ import annotations

import collections
import html
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPixmapItem, QLabel, QVBoxLayout, QWidget

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.understand.feature_map_figure import OTHER, OTHER_NAME, class_palette
from alexgui.engine.understand.feature_space import FeatureMap
from alexgui.qt.model_names import short_class_label
from alexgui.qt.panels.classify_cards import MUTED
from alexgui.qt.plots import BACKGROUND
from alexgui.qt.tile_grid import numpy_to_qimage
from alexgui.qt.workers import Job

THUMB = 64  # decoded thumbnail size; drawn at this size on screen whatever the zoom
FRAME = 2  # a frame in the class's colour around each thumbnail
MAX_THUMBS = 300
COVER = 1.2  # thumbnails appear once they would cover at most this many times the view's area
CACHED_THUMBS = 2000  # about 40 MB of pixmaps
FULL = (-1.05, 1.05)  # the map's coordinates are in [-1, 1]


def thumbs_job(items: list[tuple[str, tuple[int, int, int]]], wanted: list[frozenset[str]], stop: threading.Event,
               progress: Callable[..., None]) -> Iterator[tuple[str, np.ndarray | None]]:
    """Thumbnails, framed in their class's colour, of the images still wanted: the GUI replaces
    wanted[0] as the view moves (one reference assigned, safe to read from this thread)."""
    for path, colour in items:
        if stop.is_set():
            return
        if path not in wanted[0]:
            continue
        try:
            u8 = load_256(path, size=THUMB)
        except ImageError:
            yield path, None  # the file changed since indexing: the point stays a point
            continue
        framed = np.empty((THUMB + 2 * FRAME, THUMB + 2 * FRAME, 3), np.uint8)
        framed[...] = colour
        framed[FRAME:-FRAME, FRAME:-FRAME] = u8
        yield path, framed


class Thumb(QGraphicsPixmapItem):
    """A thumbnail at a point of the map: constant size on screen, clickable like its point."""

    def __init__(self, pixmap: QPixmap, row: int, on_click: Callable[[int], None]) -> None:
        super().__init__(pixmap)
        self.row = row
        self._on_click = on_click
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setOffset(-pixmap.width() / 2, -pixmap.height() / 2)
        self.setZValue(10)

    def mouseClickEvent(self, ev: Any) -> None:  # pyqtgraph's click event, sent by its scene
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._on_click(self.row)


class MapView(QWidget):
    """See the module docstring. `show_map(fmap)`, `mark(row, neighbours)`, `fit()`; a click on a
    point or a thumbnail emits `pointClicked(row)`."""

    pointClicked = Signal(int)
    thumbnailsShown = Signal(int)  # how many thumbnails are drawn, after each change

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.map: FeatureMap | None = None
        self._colours: list[tuple[int, int, int]] = []
        self._pixmaps: collections.OrderedDict[str, QPixmap] = collections.OrderedDict()
        self.shown: dict[int, Thumb] = {}
        self._job: Job | None = None  # the one thumbnail job
        self._running: set[Job] = set()
        self._pending: set[str] = set()  # paths the job will decode
        self._wanted: list[frozenset[str]] = [frozenset()]  # shared with the job (see thumbs_job)
        self._again = False  # the view moved while the job ran: look again when it ends

        self.plot = pg.PlotWidget()
        self.plot.setBackground(BACKGROUND)
        self.plot.setAcceptDrops(False)
        self.plot.setMenuEnabled(False)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setAspectLocked(True)
        self.plot.setMinimumSize(200, 160)
        self.view = self.plot.getViewBox()
        self.view.setLimits(xMin=-1.6, xMax=1.6, yMin=-1.6, yMax=1.6, minXRange=1e-3, minYRange=1e-3)
        self.scatter = pg.ScatterPlotItem(pen=None, size=6, hoverable=False)
        self.scatter.sigClicked.connect(self._points_clicked)
        self.plot.addItem(self.scatter)
        self.marks = pg.ScatterPlotItem(brush=None, hoverable=False)
        self.marks.setZValue(20)  # over the thumbnails
        self.plot.addItem(self.marks)
        self._timer = QTimer(self)  # thumbnails follow the view a moment after it stops moving
        self._timer.setSingleShot(True)
        self._timer.setInterval(120)
        self._timer.timeout.connect(self.update_thumbnails)
        self.view.sigRangeChanged.connect(lambda *_: self._timer.start())
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.legend)

    def show_map(self, fmap: FeatureMap | None) -> None:
        self.map = fmap
        self._clear_thumbnails()
        self.marks.clear()
        if fmap is None:
            self.scatter.clear()
            self.legend.clear()
            return
        legend, colours = class_palette(fmap.classes)
        counts = collections.Counter(fmap.classes)
        self._colours = [colours[c] for c in fmap.classes]
        brushes = {c: pg.mkBrush(*rgb, 220) for c, rgb in colours.items()}  # shared: pyqtgraph draws each style once
        self.scatter.setData(pos=fmap.coords, brush=[brushes[c] for c in fmap.classes],
                             size=6 if len(fmap) <= 5000 else 4, data=np.arange(len(fmap)))
        self.legend.setText(" &nbsp; ".join(_legend_entry(name, colours, counts) for name in legend))
        self.fit()

    def fit(self) -> None:
        """Show the whole map."""
        self.view.setRange(xRange=FULL, yRange=FULL, padding=0)

    def mark(self, row: int, neighbours: list[int]) -> None:
        """A white ring on the clicked image, yellow ones on its neighbours."""
        if self.map is None:
            return
        rows = [row, *neighbours]
        pens = [pg.mkPen("w", width=2)] + [pg.mkPen((255, 210, 60), width=1.5)] * len(neighbours)
        self.marks.setData(pos=self.map.coords[rows], size=[18] + [12] * len(neighbours), pen=pens, brush=None)

    def _points_clicked(self, _item: Any, points: Any, _ev: Any) -> None:
        if len(points):
            self.pointClicked.emit(int(points[0].index()))

    # ---- thumbnails -------------------------------------------------------------------------------

    def update_thumbnails(self) -> None:
        """Thumbnails for the points in view when there are few enough of them, else points only."""
        if self.map is None:
            return
        (x0, x1), (y0, y1) = self.view.viewRange()
        xy = self.map.coords
        rows = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))
        area = max(1.0, self.view.width() * self.view.height())
        if len(rows) > MAX_THUMBS or len(rows) * (THUMB + 2 * FRAME) ** 2 > COVER * area:
            rows = rows[:0]
        wanted = set(rows.tolist())
        self._wanted[0] = frozenset(self.map.paths[r] for r in wanted)
        for row in [r for r in self.shown if r not in wanted]:
            self.view.removeItem(self.shown.pop(row))
        missing = []
        for row in rows.tolist():
            path = self.map.paths[row]
            if row in self.shown:
                continue
            if path in self._pixmaps:
                self._pixmaps.move_to_end(path)
                self._place(row, self._pixmaps[path])
            elif path not in self._pending:
                missing.append((path, self._colours[row]))
        self.thumbnailsShown.emit(len(self.shown))
        if not missing:
            return
        if self._job is not None:
            self._again = True  # one decoding job at a time; the rest when it ends
            return
        self._pending = {p for p, _ in missing}
        job = Job(thumbs_job, missing, self._wanted, parent=self, batch_ms=80)
        job.batch.connect(self._on_thumbs)
        job.done.connect(lambda _c, j=job: self._job_ended(j))
        self._job = job
        self._running.add(job)
        job.start()

    def _place(self, row: int, pixmap: QPixmap) -> None:
        assert self.map is not None
        thumb = Thumb(pixmap, row, self.pointClicked.emit)
        thumb.setPos(float(self.map.coords[row, 0]), float(self.map.coords[row, 1]))
        self.view.addItem(thumb, ignoreBounds=True)
        self.shown[row] = thumb

    def _on_thumbs(self, items: list[tuple[str, np.ndarray | None]]) -> None:
        for path, u8 in items:
            self._pending.discard(path)
            if u8 is not None:
                self._pixmaps[path] = QPixmap.fromImage(numpy_to_qimage(u8))
        while len(self._pixmaps) > CACHED_THUMBS:
            self._pixmaps.popitem(last=False)
        self.update_thumbnails()

    def _job_ended(self, job: Job) -> None:
        self._running.discard(job)
        job.deleteLater()
        if self._job is job:
            self._job = None
            self._pending.clear()
            if self._again:
                self._again = False
                self.update_thumbnails()

    def _clear_thumbnails(self) -> None:
        for thumb in self.shown.values():
            self.view.removeItem(thumb)
        self.shown.clear()
        self._wanted[0] = frozenset()  # the running job, if any, skips the rest

    def forget_thumbnails(self) -> None:
        """Drop the decoded thumbnails (another index: other images)."""
        self._pixmaps.clear()

    def shutdown(self, msecs: int = 30000) -> None:
        for job in list(self._running):
            job.shutdown(msecs)


def _legend_entry(name: str, colours: dict[str, tuple[int, int, int]], counts: collections.Counter[str]) -> str:
    """One class in the legend: its dot, its name and count, which never break across lines."""
    if name == OTHER_NAME:
        rgb, count = OTHER, sum(n for c, n in counts.items() if colours[c] == OTHER)
    else:
        rgb, count = colours[name], counts[name]
    label = html.escape(short_class_label(name)).replace(" ", "&nbsp;")
    return (f"<span style='color:#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}'>●</span>&nbsp;{label}"
            f"&nbsp;<span style='color:{MUTED}'>{count}</span>")

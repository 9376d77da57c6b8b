"""The images that drive one unit: its top 9 over a gallery, as patches (conv) or crops (fc).

Opened by clicking a kernel in the Filters panel or a channel in the Feature maps panel, or from the
View menu; the layer and unit can be changed here too. The pass over the gallery runs in a worker
with a bar, the time left and Cancel (engine/understand/top_units.py); it computes every unit of the
layer at once and is cached, so the next unit of the same layer appears at once. Hovering a patch
shows the whole image with the patch's box drawn on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.inference.predict import TorchPredictor
from alexgui.engine.understand.top_units import DEFAULT_K, UNIT_LAYERS, LayerTops, TopImage, top_images
from alexgui.engine.understand.top_units_sheet import unit_view
from alexgui.paths import cache_dir
from alexgui.qt.elided_label import ElidedLabel
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.job_progress import JobProgress
from alexgui.qt.tile_grid import numpy_to_qimage
from alexgui.qt.workers import describe_error

CELL = 112  # three across and the whole-image view beside them fit the window at 1280x800
WHOLE = 224
# A pool or normalisation layer has its conv's channels: a click on one of its maps asks for that conv.
CONV_OF = {"norm1": "conv1", "pool1": "conv1", "norm2": "conv2", "pool2": "conv2", "pool5": "conv5"}


class TopImagesPanel(JobMixin, QWidget):
    """See the module docstring. `show_unit(predictor, layer, unit)`; `set_gallery(folder)`."""

    gallery_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.predictor: TorchPredictor | None = None
        self.gallery: Path | None = None
        self.tops: LayerTops | None = None
        self.entries: list[TopImage] = []
        self._views: list[np.ndarray | None] = []
        self._wholes: list[np.ndarray | None] = []
        self._request = 0  # the newest request; an answer to an older one is dropped
        self._running = 0  # the request whose pass runs (or ran last)

        self.layer_box = QComboBox()
        self.layer_box.addItems(UNIT_LAYERS)
        self.unit_spin = QSpinBox()
        self.unit_spin.setPrefix("unit ")
        self.unit_spin.setRange(0, 4095)
        self.show_button = QPushButton("Show")
        self.gallery_label = ElidedLabel("Images: none chosen")
        self.gallery_button = QPushButton("Images…")
        self.gallery_button.setToolTip("The folder of images to search (a retrieval index's folder, your photos, "
                                       "the validation set)")
        top = QHBoxLayout()
        for w in (QLabel("Layer"), self.layer_box, self.unit_spin, self.show_button):
            top.addWidget(w)
        top.addStretch(1)
        top.addWidget(self.gallery_button)
        self.title = QLabel("Click a kernel in the Filters panel or a channel in the Feature maps panel.")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.progress = JobProgress()
        self.progress.cancel_requested.connect(self.cancel)

        self.cells: list[QLabel] = []
        self.captions: list[QLabel] = []
        grid = QGridLayout()
        grid.setSpacing(6)
        for n in range(DEFAULT_K):
            cell = QLabel()
            cell.setFixedSize(CELL, CELL)
            cell.setAlignment(Qt.AlignmentFlag.AlignCenter)
            cell.setObjectName("topImageCell")
            cell.setMouseTracking(True)
            cell.installEventFilter(self)
            caption = QLabel()
            caption.setObjectName("hint")
            caption.setFixedWidth(CELL)
            row, col = divmod(n, 3)
            grid.addWidget(cell, 2 * row, col)
            grid.addWidget(caption, 2 * row + 1, col)
            self.cells.append(cell)
            self.captions.append(caption)
        self.whole = QLabel()
        self.whole.setFixedSize(WHOLE, WHOLE)
        self.whole.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.whole_caption = QLabel("Hover a patch to see the whole image")
        self.whole_caption.setObjectName("hint")
        self.whole_caption.setWordWrap(True)
        self.whole_caption.setFixedWidth(WHOLE)
        side = QVBoxLayout()
        side.addWidget(self.whole)
        side.addWidget(self.whole_caption)
        side.addStretch(1)
        body = QHBoxLayout()
        body.addLayout(grid)
        body.addSpacing(12)
        body.addLayout(side)
        body.addStretch(1)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.gallery_label)
        layout.addWidget(self.title)
        layout.addWidget(self.progress)
        layout.addLayout(body)
        layout.addStretch(1)

        self.show_button.clicked.connect(lambda: self.run(self.layer_box.currentText(), self.unit_spin.value()))
        self.gallery_button.clicked.connect(self._choose_gallery)

    # ---- what to show -------------------------------------------------------------------------

    def set_predictor(self, predictor: TorchPredictor | None) -> None:
        """Another model (or none): a pass of the old one still running is cancelled and its answer dropped."""
        if predictor is not self.predictor:
            self.predictor = predictor
            self.tops = None
            self._request += 1
            self.cancel()

    def set_gallery(self, folder: str | Path | None) -> None:
        self.gallery = Path(folder) if folder else None
        self.tops = None
        self.gallery_label.setText(f"Images: {self.gallery}" if self.gallery else "Images: none chosen")

    def show_unit(self, predictor: TorchPredictor, layer: str, unit: int) -> None:
        """The top 9 of `layer`'s `unit` over the gallery (asks for a gallery when none is set)."""
        self.set_predictor(predictor)
        self.run(CONV_OF.get(layer, layer), unit)

    def run(self, layer: str, unit: int) -> None:
        if self.predictor is None:
            self.title.setText("No PyTorch model: load a checkpoint or run folder first.")
            return
        if self.gallery is None:
            self._choose_gallery()
            if self.gallery is None:
                return
        with QSignalBlocker(self.layer_box), QSignalBlocker(self.unit_spin):
            self.layer_box.setCurrentText(layer)
            self.unit_spin.setMaximum(max(self.unit_spin.maximum(), unit))  # the layer's width is known after the pass
            self.unit_spin.setValue(unit)
        self.cancel()
        self._request += 1
        request = self._request
        self.title.setText(f"<b>{layer} · unit {unit}</b> · searching {self.gallery}…")
        self.after_job(lambda: self._start(request, layer, unit))

    def _start(self, request: int, layer: str, unit: int) -> None:
        if request != self._request or self.predictor is None or self.gallery is None:
            return
        self.title.setText(f"<b>{layer} · unit {unit}</b> · searching {self.gallery}…")
        self.progress.begin(0, label="images")
        self._running = request
        job = self.new_job(_find, self.predictor, self.gallery, layer, unit)
        job.progress.connect(lambda done, total, _m: self.progress.advance(done, total))
        job.yielded.connect(lambda result: self._on_result(request, layer, unit, result))
        job.errored.connect(lambda e: self.title.setText(f"<b>{layer} · unit {unit}</b>: {describe_error(e)}"))
        job.start()

    def job_done(self, cancelled: bool) -> None:
        self.progress.end()
        if cancelled and self._running == self._request:  # not when a newer request takes over
            self.title.setText("Cancelled.")

    def _on_result(self, request: int, layer: str, unit: int, result: dict[str, Any]) -> None:
        if request != self._request:
            return  # an earlier unit's pass: the newer request shows its own
        self.tops, self.entries = result["tops"], result["entries"]
        self._views, self._wholes = result["views"], result["wholes"]
        tops = self.tops
        assert tops is not None
        with QSignalBlocker(self.unit_spin):
            self.unit_spin.setRange(0, tops.units - 1)
            self.unit_spin.setValue(unit)
        kind = "the patches that" if tops.boxes is not None else "the images that"
        skipped = f" · {len(tops.skipped)} unreadable" if tops.skipped else ""
        self.title.setText(f"<b>{layer} · unit {unit}</b> · {kind} drive it most, of {len(tops.paths)} images{skipped}")
        for n, (cell, caption) in enumerate(zip(self.cells, self.captions)):
            view = self._views[n] if n < len(self._views) else None
            if view is None:
                cell.clear()
                caption.setText("")
                continue
            pixmap = QPixmap.fromImage(numpy_to_qimage(view)).scaled(
                CELL, CELL, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            cell.setPixmap(pixmap)
            entry = self.entries[n]
            caption.setText(f"#{n + 1} · {entry.activation:.3g}")
            cell.setToolTip(f"{entry.path}\nactivation {entry.activation:.4g}" +
                            (f"\nbox {list(entry.box)} in the {tops.crop}-pixel crop" if entry.box else ""))
        self.show_whole(0)

    def show_whole(self, n: int) -> None:
        """The whole crop of result n, its box drawn, beside the grid."""
        if not 0 <= n < len(self._wholes) or self._wholes[n] is None:
            return
        whole = self._wholes[n]
        assert whole is not None
        self.whole.setPixmap(QPixmap.fromImage(numpy_to_qimage(whole)).scaled(
            WHOLE, WHOLE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
        self.whole_caption.setText(f"#{n + 1}: {Path(self.entries[n].path).name}")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Enter and watched in self.cells:
            self.show_whole(self.cells.index(watched))
        return super().eventFilter(watched, event)

    def _choose_gallery(self) -> None:
        start = str(self.gallery) if self.gallery else ""
        folder = QFileDialog.getExistingDirectory(self, "Images to search for the unit's top images", start)
        if folder:
            self.set_gallery(folder)
            self.gallery_changed.emit(folder)


def _find(predictor: TorchPredictor, gallery: Path, layer: str, unit: int, stop: threading.Event,
          progress: Callable[[int, int, str], None]) -> dict[str, Any]:
    """The pass (or the cache) and the nine pictures, in the worker: the GUI thread only draws."""
    tops = top_images(predictor, gallery, layer, k=DEFAULT_K, stop=stop, progress=lambda d, t: progress(d, t, ""),
                      cache=cache_dir())
    entries = tops.unit(unit)
    views: list[np.ndarray | None] = []
    wholes: list[np.ndarray | None] = []
    for entry in entries:
        try:
            views.append(unit_view(entry, predictor.decode_size, tops.crop))
            wholes.append(_whole_with_box(entry, predictor.decode_size, tops.crop))
        except ImageError:
            views.append(None)
            wholes.append(None)
    return {"tops": tops, "entries": entries, "views": views, "wholes": wholes}


def _whole_with_box(entry: TopImage, decode_size: int, crop: int) -> np.ndarray:
    u8 = load_256(entry.path, decode_size)
    top, left = (u8.shape[0] - crop) // 2, (u8.shape[1] - crop) // 2
    view = np.array(u8[top : top + crop, left : left + crop])
    if entry.box is not None:
        x0, y0, x1, y1 = entry.box
        colour = np.array([255, 200, 0], np.uint8)
        for t in range(2):  # a 2-pixel frame, inside the crop
            view[max(y0 + t, 0), x0:x1] = colour
            view[min(y1 - 1 - t, crop - 1), x0:x1] = colour
            view[y0:y1, max(x0 + t, 0)] = colour
            view[y0:y1, min(x1 - 1 - t, crop - 1)] = colour
    return view


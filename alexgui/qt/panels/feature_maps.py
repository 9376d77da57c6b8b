"""Feature maps: what one layer of the network computes for the current image.

Pick a layer; every channel's activation map is drawn as a grey tile (each on its own scale, or one
scale for the layer), as large as the panel allows with every map in view (tile_fit.py; redrawn
when the panel is resized). Hovering names the layer, the channel and its tower, and the value under the
pointer; fully connected layers are drawn as one square map of their units. The forward pass runs
on a worker thread.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import QSize, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.understand import kernels as F
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.tile_fit import fit_tiles
from alexgui.qt.tile_grid import TileGrid, numpy_to_qimage
from alexgui.qt.workers import describe_error


def compute_activations(
    model: Any, preprocess: Any, u8: np.ndarray, layer: str, stop: Any = None, progress: Any = None
) -> tuple[str, np.ndarray]:
    """(layer, activations of one image: (C, H, W) for conv-like layers, (units,) for fc layers)."""
    with torch.inference_mode():
        x = preprocess.center_batch(torch.from_numpy(np.array(u8, np.uint8))[None].to(preprocess.mean.device))
        out = model.activations(x, [layer])[layer][0]
    return layer, out.float().cpu().numpy()


HOLDER_MARGIN = 4
REFIT_MS = 80


class FeatureMapsPanel(JobMixin, QWidget):
    """Feed it set_model(model, preprocess) and set_image(u8 or path), or drop an image on it."""

    mapsReady = Signal(str)  # layer, emitted in the GUI thread when the grid shows new maps
    channel_clicked = Signal(str, int)  # (layer, channel) of a clicked map: its top images

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self._model: Any = None
        self._preprocess: Any = None
        self._image: np.ndarray | None = None
        self._image_name = ""
        self._pending = False
        self._closed = False
        self.maps: np.ndarray | None = None
        self.layer = ""
        self.towers: list[int] = []

        self.layer_box = QComboBox()
        self.common_scale = QCheckBox("Common scale")
        self.common_scale.setToolTip("One grey scale for the whole layer instead of one per map")
        self.thumb = QLabel()
        self.thumb.setFixedSize(64, 64)
        self.thumb.setScaledContents(True)
        self.caption = QLabel("Drop an image here (or classify one) to see its feature maps.")
        self.caption.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.thumb)
        col = QVBoxLayout()
        row = QHBoxLayout()
        row.addWidget(QLabel("Layer"))
        row.addWidget(self.layer_box)
        row.addWidget(self.common_scale)
        row.addStretch(1)
        col.addLayout(row)
        col.addWidget(self.caption)
        top.addLayout(col, 1)

        self.grid = TileGrid()
        self.grid.tileClicked.connect(self._on_tile_clicked)
        self.maps_scroll = QScrollArea()
        holder = QWidget()
        holder_layout = QVBoxLayout(holder)
        holder_layout.setContentsMargins(HOLDER_MARGIN, HOLDER_MARGIN, HOLDER_MARGIN, HOLDER_MARGIN)
        holder_layout.addWidget(self.grid)
        holder_layout.addStretch(1)
        self.maps_scroll.setWidget(holder)
        self.maps_scroll.setWidgetResizable(True)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.maps_scroll, 1)
        self.tile_px = 0  # the tiles as last drawn: their side and columns
        self.columns = 0
        self._drawn_for = QSize()  # the room they were sized for
        # A dock being dragged resizes the panel many times a second: redraw once it settles.
        self._refit = QTimer(self)
        self._refit.setSingleShot(True)
        self._refit.setInterval(REFIT_MS)
        self._refit.timeout.connect(self._draw_if_resized)

        self.layer_box.currentTextChanged.connect(lambda _: self._recompute())
        self.common_scale.toggled.connect(lambda _: self._draw())

    # ---- inputs ---------------------------------------------------------------------------------

    def set_model(self, model: Any, preprocess: Any) -> None:
        """An AlexNetBase (used read-only; give a copy if it is training) and its Preprocess."""
        self._model = model
        self._preprocess = preprocess
        current = self.layer_box.currentText()
        names = list(model.layer_names())
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        self.layer_box.addItems(names)
        self.layer_box.setCurrentText(current if current in names else names[0])
        self.layer_box.blockSignals(False)
        self._recompute()

    def set_predictor(self, predictor: Any) -> None:
        """Any predictor exposing .model and .preprocess (TorchPredictor); others are ignored."""
        if hasattr(predictor, "model") and hasattr(predictor, "preprocess"):
            self.set_model(predictor.model, predictor.preprocess)

    def set_image(self, image: np.ndarray | str | Path, name: str = "") -> None:
        """A decoded (256, 256, 3) uint8 image or an image file."""
        if not isinstance(image, np.ndarray):
            try:
                name = name or str(image)
                image = load_256(image)
            except ImageError as e:
                self.caption.setText(str(e))
                return
        self._image = np.array(image, dtype=np.uint8, copy=True)  # ours: the caller may reuse theirs
        self._image_name = name or "image"
        self.thumb.setPixmap(QPixmap.fromImage(numpy_to_qimage(image)))
        self._recompute()

    # ---- work -----------------------------------------------------------------------------------

    def _recompute(self) -> None:
        if self._closed or self._model is None or self._image is None or not self.layer_box.currentText():
            return
        if self.is_busy():
            self._pending = True  # one at a time; the newest request runs when this one ends
            return
        layer = self.layer_box.currentText()
        self.caption.setText(f"Computing {layer} for {Path(self._image_name).name}…")
        job = self.new_job(compute_activations, self._model, self._preprocess, self._image, layer)
        job.yielded.connect(self._on_maps)
        job.errored.connect(lambda e: self.caption.setText(f"Could not compute the maps: {describe_error(e)}"))
        job.start()

    def _on_tile_clicked(self, i: int) -> None:
        if self.layer and not self.layer.startswith("fc"):  # an fc layer is one tile of all its units
            self.channel_clicked.emit(self.layer, i)

    def job_done(self, cancelled: bool) -> None:
        if self._pending:
            self._pending = False
            self._recompute()

    def _on_maps(self, result: tuple[str, np.ndarray]) -> None:
        layer, maps = result
        self.show_maps(layer, maps, getattr(self._model, "arch", "paper"))
        self.mapsReady.emit(layer)

    def show_maps(self, layer: str, maps: np.ndarray, arch: str = "paper") -> None:
        """Draw one image's activations of a layer: (C, H, W) maps, or (units,) of a fc layer."""
        self.layer = layer
        self.maps = maps
        count = maps.shape[0]
        self.towers = [0] * (count // 2) + [1] * (count - count // 2) if arch == "paper" and maps.ndim == 3 else [0] * count
        self._draw()

    def room(self) -> QSize:
        """The width and height the tiles can fill: the scroll area's inside, less a scroll bar's width
        (kept free whether or not one shows, so a bar appearing never pushes the last column out)."""
        scroll = self.maps_scroll
        bar = scroll.verticalScrollBar().sizeHint().width()
        frame = 2 * scroll.frameWidth() + 2 * HOLDER_MARGIN
        return QSize(max(scroll.width() - frame - bar, 1), max(scroll.height() - frame, 1))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.maps is not None:
            self._refit.start()

    def _draw_if_resized(self) -> None:
        if self.room() != self._drawn_for:
            self._draw()

    def _draw(self) -> None:
        if self.maps is None:
            return
        layer, maps = self.layer, self.maps
        if maps.ndim == 1:
            side = math.ceil(math.sqrt(maps.shape[0]))
            padded = np.full(side * side, maps.min(), np.float32)
            padded[: maps.shape[0]] = maps
            tile = F.activation_tiles(padded.reshape(1, side, side))
            units = maps.shape[0]

            def tip(i: int, x: float, y: float) -> str:
                unit = min(int(y * side), side - 1) * side + min(int(x * side), side - 1)
                if unit >= units:
                    return ""
                return f"{layer} · unit {unit} · {maps[unit]:.3g}"

            room = self.room()
            wanted = max(side * 4, 256) if side < 64 else 2 * side
            tile_px = max(min(wanted, room.width(), room.height()), min(wanted, 64))  # the one map fits the panel
            self.tile_px, self.columns, self._drawn_for = tile_px, 1, room
            self.grid.set_tiles(tile, tile_px=tile_px, cols=1, tooltip=tip)
            self.caption.setText(f"<b>{layer}</b> · {units} units as a {side}×{side} map · "
                                 f"max {maps.max():.3g} · {int((maps > 0).sum())} active")
            return
        tiles = F.activation_tiles(maps, common_scale=self.common_scale.isChecked())
        c, h, w = maps.shape
        room = self.room()
        # Up to 4 screen pixels per map pixel: beyond that a map only gets blurrier, not clearer.
        tile_px, cols = fit_tiles(c, room.width(), room.height(), max_tile=max(4 * h, 32))
        self.tile_px, self.columns, self._drawn_for = tile_px, cols, room
        towers = self.towers

        def tip(i: int, x: float, y: float) -> str:
            r, q = min(int(y * h), h - 1), min(int(x * w), w - 1)
            tower = f" · tower {towers[i]}" if len(set(towers)) > 1 else ""
            return f"{layer} · channel {i}{tower} · ({r}, {q}) = {maps[i, r, q]:.3g} · max {maps[i].max():.3g}"

        self.grid.set_tiles(tiles, tile_px, cols, tip)
        source = f" of {Path(self._image_name).name}" if self._image_name else ""
        self.caption.setText(f"<b>{layer}</b>{source} · {c} channels of {h}×{w} · hover a map for its channel")

    # ---- drops ----------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.set_image(files[0])

    def shutdown(self, msecs: int = 30000) -> None:
        # No new work from here on: the job's done handler would otherwise start the pending request.
        self._closed = True
        self._pending = False
        super().shutdown(msecs)

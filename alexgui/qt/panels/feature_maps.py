"""Feature maps: what one layer of the network computes for the current image.

Pick a layer; every channel's activation map is drawn as a grey tile (each on its own scale, or one
scale for the layer). Hovering names the layer, the channel and its tower, and the value under the
pointer; fully connected layers are drawn as one square map of their units. The forward pass runs
on a worker thread.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPixmap
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
from alexgui.qt.panels.filters import TileGrid, numpy_to_qimage
from alexgui.qt.workers import describe_error


def compute_activations(
    model: Any, preprocess: Any, u8: np.ndarray, layer: str, stop: Any = None, progress: Any = None
) -> tuple[str, np.ndarray]:
    """(layer, activations of one image: (C, H, W) for conv-like layers, (units,) for fc layers)."""
    with torch.inference_mode():
        x = preprocess.center_batch(torch.from_numpy(np.array(u8, np.uint8))[None].to(preprocess.mean.device))
        out = model.activations(x, [layer])[layer][0]
    return layer, out.float().cpu().numpy()


class FeatureMapsPanel(JobMixin, QWidget):
    """Feed it set_model(model, preprocess) and set_image(u8 or path), or drop an image on it."""

    mapsReady = Signal(str)  # layer, emitted in the GUI thread when the grid shows new maps

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
        scroll = QScrollArea()
        holder = QWidget()
        holder_layout = QVBoxLayout(holder)
        holder_layout.addWidget(self.grid)
        holder_layout.addStretch(1)
        scroll.setWidget(holder)
        scroll.setWidgetResizable(True)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)

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

    def job_done(self, cancelled: bool) -> None:
        if self._pending:
            self._pending = False
            self._recompute()

    def _on_maps(self, result: tuple[str, np.ndarray]) -> None:
        layer, maps = result
        self.layer = layer
        self.maps = maps
        count = maps.shape[0]
        arch = getattr(self._model, "arch", "paper")
        self.towers = [0] * (count // 2) + [1] * (count - count // 2) if arch == "paper" and maps.ndim == 3 else [0] * count
        self._draw()
        self.mapsReady.emit(layer)

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

            self.grid.set_tiles(tile, tile_px=max(side * 4, 256) if side < 64 else 2 * side, cols=1, tooltip=tip)
            self.caption.setText(f"<b>{layer}</b> · {units} units as a {side}×{side} map · "
                                 f"max {maps.max():.3g} · {int((maps > 0).sum())} active")
            return
        tiles = F.activation_tiles(maps, common_scale=self.common_scale.isChecked())
        c, h, w = maps.shape
        cols = 16 if c >= 64 else 8
        tile_px = int(max(14, min(4 * h, (max(self.width(), 320) - 40) // cols - 2)))
        towers = self.towers

        def tip(i: int, x: float, y: float) -> str:
            r, q = min(int(y * h), h - 1), min(int(x * w), w - 1)
            tower = f" · tower {towers[i]}" if len(set(towers)) > 1 else ""
            return f"{layer} · channel {i}{tower} · ({r}, {q}) = {maps[i, r, q]:.3g} · max {maps[i].max():.3g}"

        self.grid.set_tiles(tiles, tile_px, cols, tip)
        self.caption.setText(f"<b>{layer}</b> of {Path(self._image_name).name} · {c} channels of {h}×{w} · "
                             "hover a map for its channel")

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

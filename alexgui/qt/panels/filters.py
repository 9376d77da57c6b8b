"""The learned kernels (paper, Figure 3): conv1 as RGB tiles, tower 0's 48 above tower 1's 48.

Each tower's heading carries its colour-specificity and structure scores (engine/understand/kernels.py),
so the split the paper describes (tower 0 colour-agnostic, tower 1 colour-specific) and the kernels
turning from noise into edges and blobs can be watched as they emerge during training, each beside
its value at the first snapshot. Deeper layers (conv2..conv5) are shown one output kernel at a time, its input channels as
a grid on a blue-white-red scale.

Live updates: `panel.kernel_feed()` returns a callable for TrainControl.on_kernels; the trainer calls
it from its own thread with CPU copies of the kernels, the feed re-emits them as a queued signal,
and the panel redraws in the GUI thread. Training never waits for drawing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.model.base import CONV_LAYERS
from alexgui.engine.store.filter_history import FilterSnapshot
from alexgui.engine.understand import kernels as F
from alexgui.qt.grid_export import compose, save_png
from alexgui.qt.panels.filter_history import FilterHistoryBar
from alexgui.qt.panels.filter_text import SCORES_TIP, channels_heading, conv1_kernel_text, kernel_caption, tower_heading
from alexgui.qt.tile_grid import TileGrid, TileViewer


class KernelFeed(QObject):
    """Callable from any thread (TrainControl.on_kernels); delivers to the GUI thread by signal."""

    snapshot = Signal(object)

    def __call__(self, kernels: dict[str, Any]) -> None:
        self.snapshot.emit(kernels)


class FiltersPanel(QWidget):
    """See the module docstring. Feed it with set_model(model) or set_kernels(...)."""

    saved = Signal(str)  # the path a Save PNG wrote
    unit_clicked = Signal(str, int)  # (layer, output kernel) of a clicked tile, when units_on_click

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._kernels: dict[str, np.ndarray] = {}
        self._towers: dict[str, list[int]] = {}
        self._first_scores: dict[int, float] | None = None
        self._first_structure: dict[int, float] = {}
        self._first_kernels: dict[str, np.ndarray] = {}  # the first snapshot, for the change view
        self._drawn_for_width = -1  # the width the tiles were last sized for
        self.units_on_click = False  # True: a click asks for the kernel's top images (the explorer listens)
        self.scores: dict[int, float] = {}  # each tower's colour specificity
        self.structure: dict[int, float] = {}  # each tower's structure score
        self.viewer = TileViewer(self)
        self._feed = KernelFeed(self)
        self._feed.snapshot.connect(self._on_snapshot)

        self.layer_box = QComboBox()
        self.layer_box.addItems(CONV_LAYERS)
        self.layer_box.setToolTip("conv1: RGB kernels; deeper layers: one kernel's input channels")
        self.kernel_spin = QSpinBox()
        self.kernel_spin.setPrefix("kernel ")
        self.kernel_spin.setToolTip("Which output kernel of the layer to show, channel by channel")
        self.common_scale = QCheckBox("Common scale")
        self.common_scale.setToolTip("Scale all tiles alike (shows relative strength) instead of each on its own")
        self.show_change = QCheckBox("Change since start")
        self.show_change.setToolTip(
            "Show what training has added since the first snapshot (the start of this run, or the model as "
            "loaded) instead of the kernels themselves. Early in training the random N(0, 0.01) start "
            "hides what has been learned; the change shows it long before."
        )
        self.save_button = QPushButton("Save PNG…")
        top = QHBoxLayout()
        for w in (QLabel("Layer"), self.layer_box, self.kernel_spin):
            top.addWidget(w)
        top.addStretch(1)
        top.addWidget(self.save_button)
        switches = QHBoxLayout()  # a row of its own, so the panel fits a narrow side dock
        switches.addWidget(self.common_scale)
        switches.addWidget(self.show_change)
        switches.addStretch(1)

        self.history = FilterHistoryBar()
        self.history.frame_chosen.connect(self._show_history_frame)
        self.history.live_chosen.connect(self._show_live)
        self._live: tuple[dict[str, np.ndarray], dict[str, list[int]]] | None = None  # kept while a past frame shows
        self._newest_shown = False  # conv1 shows the history's newest frame: nothing live (a run opened to watch)

        self.status = QLabel("No model yet: train, or open a checkpoint.")
        self.status.setWordWrap(True)
        self.saved_label = QLabel()  # "Saved to PATH" after Save PNG
        self.saved_label.setObjectName("hint")
        self.saved_label.setWordWrap(True)
        self.saved_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.saved_label.hide()
        self.canvas = QWidget()
        self.canvas.setObjectName("filterCanvas")
        self.canvas_layout = QVBoxLayout(self.canvas)
        self.canvas_layout.setContentsMargins(6, 6, 6, 6)
        self.headings: list[QLabel] = []
        self.grids: list[TileGrid] = []
        self.grid_indices: list[list[int]] = []  # for each grid, the kernel index of each of its tiles
        for _ in range(2):
            heading = QLabel()
            heading.setTextFormat(Qt.TextFormat.RichText)
            heading.setWordWrap(True)  # the side dock is narrow at 1280x800
            heading.setToolTip(SCORES_TIP)
            grid = TileGrid()
            grid.tileClicked.connect(self._make_click_handler(len(self.grids)))
            self.canvas_layout.addWidget(heading)
            self.canvas_layout.addWidget(grid)
            self.headings.append(heading)
            self.grids.append(grid)
            self.grid_indices.append([])
        self.canvas_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(self.canvas)
        scroll.setWidgetResizable(True)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(switches)
        layout.addWidget(self.history)
        layout.addWidget(self.status)
        layout.addWidget(self.saved_label)
        layout.addWidget(scroll, 1)

        self.layer_box.currentTextChanged.connect(self._on_layer_changed)
        self.kernel_spin.valueChanged.connect(lambda _: self.refresh())
        self.common_scale.toggled.connect(lambda _: self.refresh())
        self.show_change.toggled.connect(lambda _: self.refresh())
        self.save_button.clicked.connect(self._choose_save_path)
        self._on_layer_changed(self.layer_box.currentText())

    # ---- feeding --------------------------------------------------------------------------------

    @property
    def kernels(self) -> dict[str, np.ndarray]:
        """The kernels shown, {layer: (out, in, kh, kw)}, as last set."""
        return dict(self._kernels)

    def kernel_feed(self) -> KernelFeed:
        """A thread-safe callable for TrainControl.on_kernels ({layer: (out, in, kh, kw) CPU tensor})."""
        return self._feed

    def set_model(self, model: Any) -> None:
        """Every conv layer's kernels and towers from an AlexNetBase (copied; the model may keep training)."""
        self._live = None  # a new model: the slider's past frame gives way
        kernels = {name: model.kernels(name) for name in CONV_LAYERS}
        towers = {name: model.kernel_towers(name) for name in CONV_LAYERS}
        self.set_kernels(kernels, towers)

    def set_kernels(
        self,
        kernels: Any,
        towers: Sequence[int] | dict[str, Sequence[int]] | None = None,
        arch: str = "paper",
        reset_history: bool = False,
    ) -> None:
        """conv1's kernels as an (N, 3, k, k) tensor/array, or {layer: kernels} for several layers.

        towers: each kernel's tower (a list for a single tensor, {layer: list} for a dict). When
        omitted, the paper model's layout is assumed for arch="paper" (first half tower 0, second
        half tower 1) and a single tower otherwise.
        """
        if not isinstance(kernels, dict):
            kernels = {"conv1": kernels}
            if towers is not None and not isinstance(towers, dict):
                towers = {"conv1": list(towers)}
        tower_map = dict(towers) if isinstance(towers, dict) else {}
        # While the history slider shows a past frame, new kernels are kept as the live ones, drawn
        # when the slider returns to its end.
        shown_k, shown_t = self._live if self._live is not None else (self._kernels, self._towers)
        if "conv1" in kernels:
            self._newest_shown = False
        for name, value in kernels.items():
            arr = F._as_numpy(value)
            shown_k[name] = arr
            if name in tower_map:
                shown_t[name] = [int(t) for t in tower_map[name]]
            else:
                n = arr.shape[0]
                shown_t[name] = [0] * (n // 2) + [1] * (n - n // 2) if arch == "paper" else [0] * n
        if reset_history:
            self._first_scores = None
            self._first_structure = {}
            self._first_kernels = {}
        for name, arr in shown_k.items():
            if name in kernels and (name not in self._first_kernels or self._first_kernels[name].shape != arr.shape):
                self._first_kernels[name] = arr.copy()
        if "conv1" in kernels:
            scores = F.tower_specificity(shown_k["conv1"], shown_t["conv1"])
            structure = F.tower_structure(shown_k["conv1"], shown_t["conv1"])
            if self._first_scores is None:
                self._first_scores = dict(scores)
                self._first_structure = dict(structure)
            if self._live is None:
                self.scores, self.structure = scores, structure
        if self._live is None:
            self._on_layer_changed(self.layer_box.currentText())
        self.history.refresh()  # the trainer has written this snapshot to the run's history too

    @Slot(object)
    def _on_snapshot(self, kernels: dict[str, Any]) -> None:
        self.set_kernels(kernels)

    # ---- the history ----------------------------------------------------------------------------

    def set_history_run(self, run: str | Path | None) -> None:
        """The run folder whose filter history the slider walks (the one training, or the model's)."""
        self.history.set_run(run)  # at its end: live_chosen, so _show_live draws what "now" is

    def _show_history_frame(self, snapshot: FilterSnapshot) -> None:
        if self._live is None:
            self._live = (dict(self._kernels), dict(self._towers))
        self._kernels["conv1"] = snapshot.kernels
        self._towers["conv1"] = list(snapshot.towers)
        self.scores = F.tower_specificity(snapshot.kernels, snapshot.towers)
        self.structure = F.tower_structure(snapshot.kernels, snapshot.towers)
        if self.layer_box.currentText() != "conv1":
            self.layer_box.setCurrentText("conv1")  # redraws
        else:
            self.refresh()

    def _show_live(self) -> None:
        """The slider's right end: the live kernels, or with none, the history's newest frame."""
        if self._live is None and not self._newest_shown and "conv1" in self._kernels:
            return  # the live kernels are on screen already
        if self._live is not None:
            self._kernels, self._towers = self._live
            self._live = None
        if self._newest_shown or "conv1" not in self._kernels:
            self._kernels.pop("conv1", None)  # the newest frame of this run, or of none
            self._newest_shown = False
            newest = self.history.latest_snapshot()
            if newest is not None:
                self._kernels["conv1"], self._towers["conv1"] = newest.kernels, list(newest.towers)
                self._newest_shown = True
        if "conv1" in self._kernels:
            self.scores = F.tower_specificity(self._kernels["conv1"], self._towers["conv1"])
            self.structure = F.tower_structure(self._kernels["conv1"], self._towers["conv1"])
        if self._newest_shown and self.layer_box.currentText() != "conv1":
            self.layer_box.setCurrentText("conv1")  # the history holds conv1 alone; redraws
        else:
            self.refresh()

    # ---- drawing --------------------------------------------------------------------------------

    def _on_layer_changed(self, layer: str) -> None:
        weights = self._kernels.get(layer)
        deeper = layer != "conv1"
        self.kernel_spin.setVisible(deeper)
        if weights is not None and deeper:
            self.kernel_spin.setMaximum(weights.shape[0] - 1)
        self.refresh()

    def displayed_kernels(self, layer: str) -> np.ndarray | None:
        """The layer's kernels, or their change since the first snapshot when that view is on: a past frame
        of the history against the history's first frame, the live kernels against the first they had."""
        weights = self._kernels.get(layer)
        if weights is None or not self.show_change.isChecked():
            return weights
        if (self._live is not None or self._newest_shown) and layer == "conv1":
            base = self.history.first_snapshot()
            first = base.kernels if base is not None else None
        else:
            first = self._first_kernels.get(layer)
        if first is None or first.shape != weights.shape:  # another network's kernels: nothing to subtract
            return weights
        return weights - first

    def refresh(self) -> None:
        layer = self.layer_box.currentText()
        weights = self.displayed_kernels(layer)
        if weights is None:
            for heading, grid in zip(self.headings, self.grids):
                heading.clear()
                grid.clear()
            self.status.setVisible(True)
            return
        self.status.setVisible(False)
        if layer == "conv1":
            self._draw_rgb(weights, self._towers[layer])
        else:
            self._draw_channels(layer, weights, self._towers[layer])

    def _draw_rgb(self, weights: np.ndarray, towers: list[int]) -> None:
        tiles = F.rgb_kernel_tiles(weights, common_scale=self.common_scale.isChecked())
        scores = F.colour_specificity(weights)
        structure = F.structure_scores(weights)
        tile_px = self._fit_tile(3 * weights.shape[-1], cols=16)
        tower_ids = sorted(set(towers))
        for slot, (heading, grid) in enumerate(zip(self.headings, self.grids)):
            if slot >= len(tower_ids):
                heading.clear()
                grid.clear()
                self.grid_indices[slot] = []
                continue
            tower = tower_ids[slot]
            members = [i for i, t in enumerate(towers) if t == tower]
            self.grid_indices[slot] = members
            score = self.scores.get(tower, float(scores[members].mean()))
            smooth = self.structure.get(tower, float(np.median(structure[members])))
            heading.setText(self._heading(tower, len(members), score, smooth, single=len(tower_ids) == 1))

            def tip(j: int, x: float, y: float, members: list[int] = members, tower: int = tower) -> str:
                return conv1_kernel_text(members[j], tower, float(scores[members[j]]), float(structure[members[j]]))

            grid.set_tiles(tiles[members], tile_px, cols=16, tooltip=tip)

    def _tile_columns_width(self) -> int:
        return max(self.width() - 40, 200)

    def _fit_tile(self, preferred: int, cols: int) -> int:
        """Tile side that fits `cols` tiles across the panel, between 14 and `preferred` pixels."""
        self._drawn_for_width = self._tile_columns_width()
        return int(max(14, min(preferred, self._drawn_for_width // cols - 2)))

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if self._tile_columns_width() != self._drawn_for_width:  # the tile size is all a width changes
            self.refresh()

    def _heading(self, tower: int, count: int, score: float, structure: float, single: bool) -> str:
        first = (self._first_scores or {}).get(tower), self._first_structure.get(tower)
        return tower_heading(tower, count, (score, structure), first, single, self.show_change.isChecked())

    def _draw_channels(self, layer: str, weights: np.ndarray, towers: list[int]) -> None:
        kernel = min(self.kernel_spin.value(), weights.shape[0] - 1)
        tiles = F.channel_tiles(weights, kernel, common_scale=self.common_scale.isChecked())
        tower = towers[kernel]
        tile_px = self._fit_tile(8 * weights.shape[-1], cols=16)
        channels = list(range(weights.shape[1]))
        self.grid_indices[0] = channels
        self.grid_indices[1] = []
        self.headings[0].setText(channels_heading(layer, kernel, tower, weights.shape))

        def tip(j: int, x: float, y: float) -> str:
            return f"{layer} kernel {kernel} · input channel {j} · tower {tower}"

        self.grids[0].set_tiles(tiles, tile_px, cols=16, tooltip=tip)
        self.headings[1].clear()
        self.grids[1].clear()

    def _make_click_handler(self, slot: int) -> Callable[[int], None]:
        return lambda j: self.unit_clicked_at(slot, j) if self.units_on_click else self.enlarge(slot, j)

    def unit_clicked_at(self, slot: int, j: int) -> None:
        """Tile j of grid `slot` asks for its unit's top images: conv1's kernel, or the deeper layer's shown kernel."""
        layer = self.layer_box.currentText()
        if j >= len(self.grid_indices[slot]):
            return
        unit = self.grid_indices[slot][j] if layer == "conv1" else self.kernel_spin.value()
        self.unit_clicked.emit(layer, unit)

    def enlarge(self, slot: int, j: int) -> None:
        """Show tile j of grid `slot` large, with its name and score."""
        layer = self.layer_box.currentText()
        weights = self._kernels.get(layer)
        if weights is None or j >= len(self.grid_indices[slot]):
            return
        i = self.grid_indices[slot][j]
        common = self.common_scale.isChecked()
        kernel = i if layer == "conv1" else self.kernel_spin.value()
        tile = F.rgb_kernel_tiles(weights, common)[i] if layer == "conv1" else F.channel_tiles(weights, kernel, common)[i]
        self.viewer.show_tile(tile, kernel_caption(layer, weights, kernel, i, self._towers[layer][kernel]))

    # ---- saving ---------------------------------------------------------------------------------

    def _choose_save_path(self) -> None:
        name = self.layer_box.currentText()
        if name != "conv1":
            name += f"-kernel{self.kernel_spin.value()}"
        path, _ = QFileDialog.getSaveFileName(self, "Save kernels as PNG", f"{name}.png", "PNG images (*.png)")
        if path:
            if not self.save_png(path):
                QMessageBox.warning(self, "Save PNG", self.saved_label.text())

    def content_image(self) -> QImage:
        """The headings and grids shown, cropped to them (grid_export.compose)."""
        return compose([(h.text(), g.image()) for h, g in zip(self.headings, self.grids)], self.font())

    def save_png(self, path: str | Path) -> bool:
        """The headings and grids as shown, cropped to them, as a PNG file; says where (or why not)."""
        try:
            save_png(self.content_image(), path)
        except OSError as e:
            self.saved_label.setText(f"Not saved: {e}")
            self.saved_label.show()
            return False
        message = f"Saved to {path}"
        self.saved_label.setText(message)
        self.saved_label.setToolTip(str(path))
        self.saved_label.show()
        window = self.window()
        if isinstance(window, QMainWindow):  # and in the window's status bar, where messages go
            window.statusBar().showMessage(message, 8000)
        self.saved.emit(str(path))
        return True

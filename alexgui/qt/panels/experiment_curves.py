"""The Experiments panel's plot: every variant and seed overlaid as it trains, or as a saved report
drew them; one colour per variant, one line style per seed, and the speed experiments' target line.

Points are collected as they arrive and drawn a few times a second (REDRAW_MS, the panel's timer),
not at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from alexgui.qt.plots import BACKGROUND, RUN_COLORS

LIVE_SMOOTH_STEPS = 10  # running mean of the live training-error curves (the report uses --smooth-steps)
PLOT_MIN_HEIGHT = 240  # below this the tick labels overlap and the legend covers the curves
_STYLES = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine)


@dataclass
class Curve:
    label: str
    colour: str
    style: Qt.PenStyle
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    window: list[float] = field(default_factory=list)  # the last errors, for the running mean
    item: pg.PlotDataItem | None = None
    drawn: int = 0

    def add_smoothed(self, x: float, error: float) -> None:
        """A training step's error, drawn as the mean of the last LIVE_SMOOTH_STEPS steps."""
        self.window.append(error)
        del self.window[:-LIVE_SMOOTH_STEPS]
        self.xs.append(x)
        self.ys.append(sum(self.window) / len(self.window))


class ExperimentCurves(QWidget):
    """See the module docstring."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setBackground(BACKGROUND)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.addLegend(offset=(-10, 10))
        self.plot.setLabel("bottom", "step")
        self.plot.getAxis("left").enableAutoSIPrefix(False)  # errors read as 0.45, not 450 (x0.001)
        self.plot.setMinimumHeight(PLOT_MIN_HEIGHT)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self._curves: dict[tuple[int, str], Curve] = {}
        self._variant_colours: dict[str, str] = {}
        self.target_line: pg.InfiniteLine | None = None

    def reset(self, towers: bool) -> None:
        """No curves; the axes named for a towers experiment (colour specificity) or training error."""
        self.plot.clear()
        legend = self.plot.plotItem.legend
        if legend is not None:
            legend.clear()
        self._curves.clear()
        self._variant_colours.clear()
        self.target_line = None
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "conv1 colour specificity" if towers else
                           f"training top-1 error (mean of {LIVE_SMOOTH_STEPS} steps)")  # fmt: skip

    def curve(self, index: int, variant: str, seed: int, several_seeds: bool, key: str | None = None) -> Curve:
        """The curve of run `index` (made on first use): coloured by variant (or `key`), styled by seed."""
        key = key or variant
        curve = self._curves.get((index, key))
        if curve is None:
            colour = self._variant_colours.setdefault(key, RUN_COLORS[len(self._variant_colours) % len(RUN_COLORS)])
            label = f"{variant} (seed {seed})" if several_seeds or seed else variant
            curve = Curve(label, colour, _STYLES[seed % len(_STYLES)])
            curve.item = self.plot.plot([], [], name=label, pen=pg.mkPen(colour, width=2, style=curve.style))
            self._curves[(index, key)] = curve
        return curve

    def show_target(self, target: float) -> None:
        """The speed experiments' target error as a dashed line (once)."""
        if self.target_line is not None:
            return
        self.target_line = pg.InfiniteLine(
            pos=target, angle=0, pen=pg.mkPen("#8b949e", width=1, style=Qt.PenStyle.DashLine),
            label=f"target {100 * target:.1f}%", labelOpts={"position": 0.12, "color": "#8b949e"},
        )  # fmt: skip
        self.plot.addItem(self.target_line)

    def show_report_curves(self, curves: dict[str, Any], several_seeds: bool) -> None:
        """The curves a report saved (report.json's "curves"), drawn at once."""
        if not curves:
            return
        self.plot.setLabel("left", str(curves.get("y_label", "")))
        self.plot.setLabel("bottom", str(curves.get("x_label", "")))
        for s in curves.get("series", []):
            curve = self.curve(len(self._curves), str(s["variant"]), int(s["seed"]), several_seeds, key=str(s["label"]))
            points = [(float(x), float(y)) for x, y in zip(s["x"], s["y"]) if x is not None and y is not None]
            curve.xs, curve.ys = [x for x, _ in points], [y for _, y in points]
        self.redraw()

    def redraw(self) -> None:
        for curve in self._curves.values():
            if curve.item is not None and curve.drawn != len(curve.xs):
                curve.item.setData(curve.xs, curve.ys)
                curve.drawn = len(curve.xs)

    def points(self) -> dict[str, int]:
        """Points drawn per curve label."""
        return {c.label: c.drawn for c in self._curves.values()}

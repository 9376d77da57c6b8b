"""Live training curves: loss, top-1 / top-5 error, learning rate and throughput, for one or more runs.

One curve item per series, updated with setData only when its run has news (RunHistory.version), with
peak downsampling and clip-to-view so that a 90-epoch run draws as fast as a 9-step one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from alexgui.qt.session import RunHistory

# A calm dark theme; the style sheet in resources/style.qss uses the same values.
BACKGROUND = "#1b1f24"
PANEL = "#22272e"
FOREGROUND = "#c9d1d9"
MUTED = "#8b949e"
GRID_ALPHA = 0.12
# Tableau 10: distinct for the common colour-vision deficiencies, calm on a dark background.
RUN_COLORS = ("#4e9de6", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac")


class LogAxis(pg.AxisItem):
    """A log axis labelled with plain numbers (0.01, 0.005, 0.001) at 1-2-5 steps, not 10^x with a scale factor."""

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            x = 10 ** float(v) * scale
            mantissa = x / 10 ** np.floor(np.log10(x)) if x > 0 else 0
            out.append(f"{x:g}" if any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5)) else "")
        return out


def run_color(index: int) -> QColor:
    return QColor(RUN_COLORS[index % len(RUN_COLORS)])


def _faded(color: QColor, alpha: int) -> QColor:
    c = QColor(color)
    c.setAlpha(alpha)
    return c


@dataclass
class _RunCurves:
    history: RunHistory
    color: QColor
    items: dict[str, pg.PlotDataItem] = field(default_factory=dict)
    drawn_version: int = -1


class MetricPlots(QWidget):
    """The four training plots, sharing their step axis, with a hint while there is nothing to draw."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        self._runs: dict[str, _RunCurves] = {}
        self._stack = QStackedLayout(self)
        self.placeholder = QLabel(
            "<p style='font-size:15pt'>No training curves yet</p>"
            "<p>Press <b>Start</b> (F5) to train on the built-in demo dataset,<br>"
            "or open a run folder (Ctrl+R) to watch or compare runs.</p>"
        )
        self.placeholder.setObjectName("plotPlaceholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._stack.addWidget(self.placeholder)

        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground(BACKGROUND)
        # Drops anywhere on the window belong to the main window, not to the plot scene.
        self.view.setAcceptDrops(False)
        self.view.ci.setContentsMargins(6, 6, 6, 6)
        self.view.ci.setSpacing(10)
        self._stack.addWidget(self.view)

        self.loss_plot = self._add_plot(0, 0, "Training loss", "cross-entropy")
        self.error_plot = self._add_plot(0, 1, "Error: train (running) and validation (per epoch)", "error (%)")
        self.lr_plot = self._add_plot(1, 0, "Learning rate", "learning rate (log scale)", LogAxis("left"))
        self.speed_plot = self._add_plot(1, 1, "Throughput", "images / s")
        for plot in (self.loss_plot, self.error_plot):  # the bottom row names the shared step axis
            plot.setLabel("bottom", None)
        self.lr_plot.setLogMode(y=True)
        self.error_plot.setLimits(yMin=-2, yMax=102)
        self.speed_plot.setLimits(yMin=0)
        for plot in (self.error_plot, self.lr_plot, self.speed_plot):
            plot.setXLink(self.loss_plot)
        self.loss_legend = self._legend(self.loss_plot, (-8, 8))  # loss falls: the top right is free
        self.error_legend = self._legend(self.error_plot, (8, -8))  # error starts high: the bottom left is free

    # -- construction -----------------------------------------------------------------------

    def _add_plot(self, row: int, col: int, title: str, y_label: str, left: pg.AxisItem | None = None) -> pg.PlotItem:
        plot: pg.PlotItem = self.view.addPlot(row=row, col=col, axisItems={"left": left} if left else None)
        plot.setTitle(title, color=FOREGROUND, size="10.5pt")
        plot.setLabel("left", y_label, color=MUTED)
        plot.setLabel("bottom", "optimizer step", color=MUTED)
        plot.showGrid(x=True, y=True, alpha=GRID_ALPHA)
        plot.setDownsampling(auto=True, mode="peak")
        plot.setClipToView(True)
        plot.setMenuEnabled(True)
        font = QFont()
        font.setPointSizeF(8.5)
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(pg.mkPen("#3d444d"))
            axis.setTextPen(pg.mkPen(MUTED))
            axis.setStyle(tickFont=font, tickTextOffset=4)
            axis.enableAutoSIPrefix(False)  # "images / s" must not turn into "x1000 images / s"
        plot.getAxis("left").setWidth(58)
        return plot

    @staticmethod
    def _legend(plot: pg.PlotItem, offset: tuple[int, int]) -> pg.LegendItem:
        legend = plot.addLegend(offset=offset, labelTextColor=FOREGROUND, labelTextSize="8.5pt")
        legend.setBrush(pg.mkBrush(_faded(QColor(PANEL), 215)))
        legend.setPen(pg.mkPen("#3d444d"))
        return legend

    def _make_curves(self, key: str, run: _RunCurves, label_runs: bool) -> None:
        c = run.color
        name = run.history.name
        thin = pg.mkPen(_faded(c, 80), width=1)
        solid = pg.mkPen(c, width=2)
        dashed = pg.mkPen(c, width=1.6, style=Qt.PenStyle.DashLine)

        def curve(plot: pg.PlotItem, pen: object, legend: str | None = None, **kw: object) -> pg.PlotDataItem:
            item = pg.PlotDataItem(pen=pen, connect="finite", name=legend, **kw)
            plot.addItem(item)
            return item

        items = run.items
        items["loss"] = curve(self.loss_plot, thin)
        items["loss_smooth"] = curve(self.loss_plot, solid, name if label_runs else "smoothed (EMA 0.9)")
        if not label_runs:
            self.loss_legend.addItem(items["loss"], "per step")
        items["top1_smooth"] = curve(self.error_plot, pg.mkPen(c, width=1.5), None if label_runs else "train top-1")
        items["top5_smooth"] = curve(self.error_plot, pg.mkPen(_faded(c, 150), width=1.5, style=Qt.PenStyle.DotLine),
                                     None if label_runs else "train top-5")
        symbol = {"symbol": "o", "symbolSize": 7, "symbolBrush": c, "symbolPen": pg.mkPen(BACKGROUND)}
        items["val_top1"] = curve(self.error_plot, solid, None if label_runs else "val top-1", **symbol)
        hollow = {"symbol": "o", "symbolSize": 7, "symbolBrush": BACKGROUND, "symbolPen": pg.mkPen(c, width=1.5)}
        items["val_top5"] = curve(self.error_plot, dashed, None if label_runs else "val top-5", **hollow)
        items["lr"] = curve(self.lr_plot, solid)
        items["ips"] = curve(self.speed_plot, thin)
        items["ips_smooth"] = curve(self.speed_plot, solid)

    # -- updating ---------------------------------------------------------------------------

    def set_runs(self, runs: list[tuple[str, RunHistory, QColor]]) -> None:
        """Show exactly these runs (key, history, colour), in this order; the first one is drawn on top."""
        wanted = {key for key, _, _ in runs}
        same = list(self._runs) == [key for key, _, _ in runs] and all(
            self._runs[k].history is h and self._runs[k].color == c for k, h, c in runs
        )
        if not same:
            for key in list(self._runs):
                self._remove(key)
            label_runs = len(runs) > 1
            # Draw the first (current) run last so it sits on top of the overlays.
            for key, history, color in reversed(runs):
                self._runs[key] = _RunCurves(history, QColor(color))
                self._make_curves(key, self._runs[key], label_runs)
            self._runs = {key: self._runs[key] for key, _, _ in runs}
        assert set(self._runs) == wanted
        self._stack.setCurrentIndex(1 if runs else 0)
        self.refresh()

    def _remove(self, key: str) -> None:
        run = self._runs.pop(key)
        for item in run.items.values():
            for legend in (self.loss_legend, self.error_legend):
                legend.removeItem(item)
            plot = item.getViewBox()
            if plot is not None:
                plot.removeItem(item)

    def refresh(self) -> bool:
        """Redraw the runs whose history changed since the last call; True when anything was drawn."""
        drew = False
        for run in self._runs.values():
            if run.drawn_version != run.history.version:
                self._draw(run)
                run.drawn_version = run.history.version
                drew = True
        return drew

    def _draw(self, run: _RunCurves) -> None:
        h = run.history
        steps = h.column("step")
        items = run.items
        for name in ("loss", "loss_smooth", "top1_smooth", "top5_smooth", "ips", "ips_smooth"):
            items[name].setData(steps, h.column(name))
        lr = h.column("lr")
        positive = lr > 0  # a log axis cannot show zero
        items["lr"].setData(steps[positive], lr[positive])
        epoch_steps = h.epoch_column("step")
        for name in ("val_top1", "val_top5"):
            values = h.epoch_column(name)
            finite = np.isfinite(values)
            items[name].setData(epoch_steps[finite], values[finite])

    def curve(self, key: str, series: str) -> pg.PlotDataItem:
        """The curve item of one run's series (tests and the benchmark read its data)."""
        return self._runs[key].items[series]

    @property
    def run_keys(self) -> list[str]:
        return list(self._runs)

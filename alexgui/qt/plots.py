"""Live training curves: loss, top-1 / top-5 error, learning rate and throughput, for one or more runs.

One curve item per series, updated with setData only when its run has news (RunHistory.data_version)
and decimated to about two points per pixel, so that a 90-epoch run draws as fast as a 9-step one.

The axes hold still while a run grows: each plot's auto-range follows an invisible anchor item that
spans a rounded-up range around the data (`sticky_range`), moved only when the data leaves it or
fills too little of it. With the axes unchanged, a new point repaints only the curves, and the axes
(which also draw the grid) come from a pixmap cache instead of being redrawn: on a 2-core machine,
every millisecond the GUI thread paints is taken from training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QResizeEvent
from PySide6.QtWidgets import QCheckBox, QGraphicsItem, QLabel, QStackedLayout, QWidget

from alexgui.engine.training.history import RunHistory
from alexgui.qt.plot_axes import LogAxis, Range, decimate, nice_ceiling, sticky_range

# The axis helpers moved to plot_axes.py; importing them from here still works.
__all__ = ["BACKGROUND", "RUN_COLORS", "LogAxis", "MetricPlots", "decimate", "nice_ceiling", "run_color", "sticky_range"]

# A calm dark theme; the style sheet in resources/style.qss uses the same values.
BACKGROUND = "#1b1f24"
FOREGROUND = "#c9d1d9"
MUTED = "#8b949e"
GRID_ALPHA = 0.12

STAGGER_MS = 60
PLOT_SERIES = {
    "loss": ("loss", "loss_smooth"),
    "error": ("top1_smooth", "top5_smooth", "val_top1", "val_top5"),
    "lr": ("lr",),
    "speed": ("ips", "ips_smooth"),
}

# Tableau 10: distinct for the common colour-vision deficiencies, calm on a dark background.
RUN_COLORS = ("#4e9de6", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac")


def _series_xy(history: RunHistory, series: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of one series: validation series have a point per epoch, the rest per step."""
    if series.startswith("val_"):
        return history.epoch_column("step"), history.epoch_column(series)
    return history.column("step"), history.column(series)


LEGEND_NAME_CHARS = 32  # a run's name in the legend; the runs list shows it whole


def legend_name(name: str, chars: int = LEGEND_NAME_CHARS) -> str:
    """A run's name short enough for the legend: the middle elided (dates start and datasets end names)."""
    if len(name) <= chars:
        return name
    head = (chars - 1) // 2
    return f"{name[:head]}…{name[-(chars - 1 - head):]}"


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
    drawn: dict[str, int] = field(default_factory=dict)  # plot name -> history.data_version drawn there


class MetricPlots(QWidget):
    """The four training plots, sharing their step axis, with a hint while there is nothing to draw.

    The loss axis can be logarithmic (`set_loss_log`, the "log scale" box over the loss plot): one
    run's early spike (a loss of 35 at a too-high learning rate) would otherwise flatten every other
    curve against the bottom of a linear axis."""

    loss_log_changed = Signal(bool)

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

        # A LogAxis labels in plain numbers once the log scale is on; on a linear scale it is a plain axis.
        self.loss_plot = self._add_plot(0, 0, "Training loss", "cross-entropy", LogAxis("left"))
        self.loss_plot.setToolTip("Loss of each training batch, and its exponential moving average (0.9)")
        # Short: a long title sets the column's minimum width. The legend says which curve is which.
        self.error_plot = self._add_plot(0, 1, "Top-1 / top-5 error", "error (%)")
        # Row 1 holds the legends of the top plots, below their step axes, where they hide no data.
        self.loss_legend = self._legend(0)
        # One run name a row: side by side, two long names made the plots' column wider than the view
        # (the curves ran under the right dock at 1280x800).
        self.loss_legend.setColumnCount(1)
        self.error_legend = self._legend(1)
        self.lr_plot = self._add_plot(2, 0, "Learning rate", "learning rate (log scale)", LogAxis("left"))
        self.speed_plot = self._add_plot(2, 1, "Throughput", "images / s")
        for plot in (self.loss_plot, self.error_plot):  # the bottom row names the shared step axis
            plot.setLabel("bottom", None)
        self.lr_plot.setLogMode(y=True)
        self.error_plot.setLimits(yMin=-2, yMax=102)
        self.speed_plot.setLimits(yMin=0)
        # Not x-linked: a plot redrawn alone must not make the other three repaint (they all follow the step range).
        self._plots = {"loss": self.loss_plot, "error": self.error_plot, "lr": self.lr_plot, "speed": self.speed_plot}
        # Invisible items the auto-range follows while runs are live (see the module's docstring).
        # A transparent pen, not pen=None: an item with no pen reports no bounds to the auto-range.
        self._anchors = {name: pg.PlotDataItem(pen=pg.mkPen(0, 0, 0, 0)) for name in self._plots}
        self._ranges: dict[str, Range | None] = dict.fromkeys(self._plots)
        self._log_y = {"lr"}  # plots whose y axis is logarithmic: their data bounds are taken as log10
        # Over the loss plot's title row, where it hides no data and costs the plots no height.
        self.loss_log = QCheckBox("log scale", self.view)
        self.loss_log.setObjectName("plotToggle")
        self.loss_log.setToolTip("Logarithmic loss axis: one run's spike no longer flattens the other curves")
        self.loss_log.toggled.connect(self.set_loss_log)
        self.loss_plot.geometryChanged.connect(self._place_loss_toggle)
        self._live = False
        for name, plot in self._plots.items():
            plot.addItem(self._anchors[name])
            self._anchors[name].setVisible(False)
        self._next = 0
        # News is drawn one plot per tick: four small paints instead of one big one keep the event loop
        # responsive (a full repaint can take tens of milliseconds on a busy CPU).
        self._stagger = QTimer(self)
        self._stagger.setInterval(STAGGER_MS)
        self._stagger.timeout.connect(self._draw_next)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.view.setGeometry(self.rect())
        self._place_loss_toggle()

    def _place_loss_toggle(self) -> None:
        box = self.loss_log
        box.adjustSize()
        rect = self.view.mapFromScene(self.loss_plot.sceneBoundingRect()).boundingRect()
        # At the title row's left, above the axis labels: the title is centred on the data area, which
        # starts right of the axis, so there is more room on its left (at 1280x800 the right end overlapped it).
        box.move(rect.left() + 4, rect.top() + 1)

    @property
    def loss_is_log(self) -> bool:
        return "loss" in self._log_y

    def set_loss_log(self, on: bool) -> None:
        """Show the loss on a logarithmic (True) or linear axis; the box over the plot follows."""
        if on == self.loss_is_log:
            return
        if on:
            self._log_y.add("loss")
        else:
            self._log_y.discard("loss")
        self.loss_log.setChecked(on)
        self.loss_plot.setLogMode(y=on)
        self.loss_plot.setLabel("left", "cross-entropy (log scale)" if on else "cross-entropy", color=MUTED)
        self._ranges["loss"] = None  # a range in the other scale's units means nothing now
        if self._live:
            self._place_anchor("loss")
        self.loss_plot.getViewBox().updateAutoRange()
        self.loss_log_changed.emit(on)

    # -- construction -----------------------------------------------------------------------

    def _add_plot(self, row: int, col: int, title: str, y_label: str, left: pg.AxisItem | None = None) -> pg.PlotItem:
        plot: pg.PlotItem = self.view.addPlot(row=row, col=col, axisItems={"left": left} if left else None)
        plot.setTitle(title, color=FOREGROUND, size="10.5pt")
        plot.setLabel("left", y_label, color=MUTED)
        plot.setLabel("bottom", "optimizer step", color=MUTED)
        plot.showGrid(x=True, y=True, alpha=GRID_ALPHA)
        plot.setMenuEnabled(True)
        font = QFont()
        font.setPointSizeF(8.5)
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(pg.mkPen("#3d444d"))
            axis.setTextPen(pg.mkPen(MUTED))
            axis.setStyle(tickFont=font, tickTextOffset=4)
            axis.enableAutoSIPrefix(False)  # "images / s" must not turn into "x1000 images / s"
            # No sub-minor ticks (and no vertical minor grid lines): each grid line costs paint time.
            axis.setStyle(maxTickLevel=1 if name == "left" else 0)
            # The axis also paints the grid across the plot, so any new point would repaint it; cached
            # as a pixmap, it is redrawn only when its ticks change.
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        plot.getAxis("left").setWidth(58)
        return plot

    def _legend(self, col: int) -> pg.LegendItem:
        # Two entries a row: four would make each plot column wider than a 1280-pixel window leaves it.
        legend = pg.LegendItem(colCount=2, labelTextColor=FOREGROUND, labelTextSize="8.5pt", horSpacing=12)
        self.view.addItem(legend, row=1, col=col)
        return legend

    def _make_curves(self, run: _RunCurves, label_runs: bool, primary: bool) -> None:
        """Curves of one run. With several runs the loss legend names the runs; the error legend
        always explains the line styles, with the primary (current) run's curves."""
        c = run.color
        thin = pg.mkPen(_faded(c, 90), width=1)
        solid = pg.mkPen(c, width=2)
        dashed = pg.mkPen(c, width=1.6, style=Qt.PenStyle.DashLine)

        def curve(plot: pg.PlotItem, pen: object, legend: pg.LegendItem | None = None, label: str = "",
                  **kw: object) -> pg.PlotDataItem:
            # Antialiasing the long thin per-step curves costs more than it shows; the rest keep it.
            kw.setdefault("antialias", pen is not thin)
            item = pg.PlotDataItem(pen=pen, connect="finite", **kw)
            plot.addItem(item)
            if legend is not None:
                legend.addItem(item, label)
            return item

        items = run.items
        loss_legend = self.loss_legend if label_runs or primary else None
        style_legend = self.error_legend if primary else None
        if label_runs:
            items["loss"] = curve(self.loss_plot, thin)
            items["loss_smooth"] = curve(self.loss_plot, solid, loss_legend, legend_name(run.history.name))
        else:
            items["loss"] = curve(self.loss_plot, thin, loss_legend, "per step")
            items["loss_smooth"] = curve(self.loss_plot, solid, loss_legend, "smoothed")  # EMA 0.9: see the tooltip
        items["top1_smooth"] = curve(self.error_plot, pg.mkPen(c, width=1.5), style_legend, "train top-1")
        # A solid faded line, not a dotted one: dash patterns on a long antialiased path are slow to draw.
        items["top5_smooth"] = curve(self.error_plot, pg.mkPen(_faded(c, 120), width=1.5), style_legend, "train top-5")
        symbol = {"symbol": "o", "symbolSize": 7, "symbolBrush": c, "symbolPen": pg.mkPen(BACKGROUND)}
        items["val_top1"] = curve(self.error_plot, solid, style_legend, "val top-1", **symbol)
        hollow = {"symbol": "o", "symbolSize": 7, "symbolBrush": BACKGROUND, "symbolPen": pg.mkPen(c, width=1.5)}
        items["val_top5"] = curve(self.error_plot, dashed, style_legend, "val top-5", **hollow)
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
            for i, (key, history, color) in reversed(list(enumerate(runs))):
                self._runs[key] = _RunCurves(history, QColor(color))
                self._make_curves(self._runs[key], label_runs, primary=i == 0)
            self._runs = {key: self._runs[key] for key, _, _ in runs}
        assert set(self._runs) == wanted
        self._stack.setCurrentIndex(1 if runs else 0)
        self.view.setGeometry(self.rect())  # the stack sizes only its current page; keep the view in step
        if same:
            self.schedule()
        else:
            self.refresh()  # the user changed what is shown: draw it at once

    def _remove(self, key: str) -> None:
        run = self._runs.pop(key)
        for item in run.items.values():
            for legend in (self.loss_legend, self.error_legend):
                legend.removeItem(item)
            plot = item.getViewBox()
            if plot is not None:
                plot.removeItem(item)

    def _stale(self, plot: str) -> bool:
        return any(run.drawn.get(plot) != run.history.data_version for run in self._runs.values())

    @property
    def pending(self) -> bool:
        return any(self._stale(p) for p in self._plots)

    def schedule(self) -> None:
        """Draw what is new, one plot per tick."""
        if self.pending and not self._stagger.isActive():
            self._draw_next()
            if self.pending:
                self._stagger.start()

    def _draw_next(self) -> None:
        names = list(self._plots)
        for offset in range(len(names)):
            name = names[(self._next + offset) % len(names)]
            if self._stale(name):
                self._draw_plot(name)
                self._next = (names.index(name) + 1) % len(names)
                break
        if not self.pending:
            self._stagger.stop()

    def refresh(self) -> bool:
        """Draw everything that is new now; True when anything was drawn."""
        stale = [name for name in self._plots if self._stale(name)]
        for name in stale:
            self._draw_plot(name)
        self._stagger.stop()
        return bool(stale)

    def set_live(self, live: bool) -> None:
        """While a run grows, hold the axes still (sticky ranges); otherwise fit the data tightly."""
        if live == self._live:
            return
        self._live = live
        for name, anchor in self._anchors.items():
            self._ranges[name] = None
            anchor.setVisible(False)
            if live:
                self._place_anchor(name)
            self._plots[name].getViewBox().updateAutoRange()

    def _draw_plot(self, name: str) -> None:
        for run in self._runs.values():
            if run.drawn.get(name) != run.history.data_version:
                self._set_data(run, name)
                run.drawn[name] = run.history.data_version
        if self._live:
            self._place_anchor(name)
        # Settle the auto-range now: left to the paint, a range change asks for a second full paint.
        self._plots[name].getViewBox().updateAutoRange()

    def _place_anchor(self, name: str) -> None:
        bounds = self._data_bounds(name)
        anchor = self._anchors[name]
        if bounds is None:
            anchor.setVisible(False)
            self._ranges[name] = None
            return
        log_y = name in self._log_y
        wanted = sticky_range(self._ranges[name], bounds, log_y=log_y)
        if wanted != self._ranges[name] or not anchor.isVisible():
            self._ranges[name] = wanted
            x0, x1, y0, y1 = wanted
            ys = [10.0 ** y0, 10.0 ** y1] if log_y else [y0, y1]  # the plot takes lr values and shows log10
            anchor.setData([x0, x1], ys)
            anchor.setVisible(True)

    def _data_bounds(self, name: str) -> Range | None:
        """x and y bounds of the finite points this plot shows (y as log10 on the learning-rate plot)."""
        xs: list[float] = []
        ys: list[float] = []
        for run in self._runs.values():
            h = run.history
            for series in PLOT_SERIES[name]:
                x, y = _series_xy(h, series)
                if name in self._log_y:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        y = np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)
                finite = np.isfinite(y)
                if finite.any():
                    xs += [float(x[finite].min()), float(x[finite].max())]
                    ys += [float(y[finite].min()), float(y[finite].max())]
        if not xs:
            return None
        return min(xs), max(xs), min(ys), max(ys)

    def _set_data(self, run: _RunCurves, plot: str) -> None:
        items = run.items
        for name in PLOT_SERIES[plot]:
            x, y = _series_xy(run.history, name)
            if name in ("loss", "ips"):
                items[name].setData(*decimate(x, y, peaks=True))
            elif name == "lr":
                positive = y > 0  # a log axis cannot show zero
                items[name].setData(*decimate(x[positive], y[positive], peaks=True))
            elif name.startswith("val_"):
                finite = np.isfinite(y)
                items[name].setData(x[finite], y[finite])
            else:
                items[name].setData(*decimate(x, y))

    def curve(self, key: str, series: str) -> pg.PlotDataItem:
        """The curve item of one run's series (tests and the benchmark read its data)."""
        return self._runs[key].items[series]

    @property
    def run_keys(self) -> list[str]:
        return list(self._runs)

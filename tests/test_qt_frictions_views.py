"""The frictions of issue 19 in the views: Save PNG, the loss axis, and feature maps sized to the panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QMainWindow

from alexgui.engine.events import StepDone
from alexgui.engine.training.history import RunHistory
from alexgui.qt import grid_export
from alexgui.qt.panels.feature_maps import FeatureMapsPanel
from alexgui.qt.panels.filters import FiltersPanel
from alexgui.qt.plots import MetricPlots

pytestmark = pytest.mark.timeout(60)


# -- Save PNG: says where, and crops to the content ------------------------------------------------


def _kernels() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"conv1": rng.normal(size=(96, 3, 11, 11)).astype(np.float32),
            "conv2": rng.normal(size=(256, 48, 5, 5)).astype(np.float32)}


def _has_content(image: QImage, row: int | None = None, col: int | None = None) -> bool:
    """Whether a row (or column) of the image holds anything but the background."""
    background = QColor(grid_export.BACKGROUND).rgb()
    points = ([(x, row) for x in range(image.width())] if row is not None
              else [(col, y) for y in range(image.height())])
    return any(image.pixel(x, y) != background for x, y in points)


@pytest.mark.parametrize("layer", ["conv2", "conv1"])
def test_save_png_crops_to_the_grids_and_says_where(qtbot, tmp_path: Path, layer: str) -> None:
    window = QMainWindow()
    panel = FiltersPanel()
    window.setCentralWidget(panel)
    qtbot.addWidget(window)
    window.resize(900, 900)  # far more room than a conv2 grid needs: the old grab saved it all
    window.show()
    qtbot.waitExposed(window)
    panel.set_kernels(_kernels())
    panel.layer_box.setCurrentText(layer)
    target = tmp_path / f"{layer}.png"
    with qtbot.waitSignal(panel.saved, timeout=5_000) as saved:
        assert panel.save_png(target)
    assert saved.args == [str(target)]

    image = QImage(str(target))
    grids = [g for g in panel.grids if g.count]
    assert image.width() == max(g.width() for g in grids) + 2 * grid_export.MARGIN  # the grids' width, not the panel's
    assert image.height() < panel.canvas.height()
    margin = grid_export.MARGIN
    # The content reaches each bound (less the margin): nothing empty was saved around it.
    assert _has_content(image, row=image.height() - margin - 1)
    assert _has_content(image, col=image.width() - margin - 1)
    assert any(_has_content(image, row=margin + k) for k in range(6))  # the heading (text has some leading)
    assert _has_content(image, col=margin)
    assert not _has_content(image, row=image.height() - 1)  # the margin itself is background

    assert panel.saved_label.isVisible() and panel.saved_label.text() == f"Saved to {target}"
    assert window.statusBar().currentMessage() == f"Saved to {target}"


def test_save_png_says_why_when_it_cannot_write(qtbot, tmp_path: Path) -> None:
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_kernels(_kernels())
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "x.png"  # its "folder" is a file: nothing can be written there
    assert not panel.save_png(target)
    assert panel.saved_label.text().startswith("Not saved:")
    assert not target.exists()


# -- the loss axis ------------------------------------------------------------------------------


def _spiky_history() -> RunHistory:
    h = RunHistory("spike")
    losses = [35.0] + [2.0 - 0.01 * i for i in range(100)]  # one early spike, then a slow fall from 2 to 1
    h.add([StepDone(i + 1, 0, batch=i + 1, batches=200, loss=v, top1_err=0.9, top5_err=0.5, lr=0.01, images_per_s=5.0)
           for i, v in enumerate(losses)])
    return h


def _share_of_y_range(plots: MetricPlots, low: float, high: float) -> float:
    """The fraction of the loss plot's height that values from low to high take."""
    y0, y1 = plots.loss_plot.getViewBox().viewRange()[1]
    if plots.loss_is_log:
        low, high = np.log10(low), np.log10(high)
    return (high - low) / (y1 - y0)


def test_the_log_loss_axis_keeps_a_spike_from_flattening_the_curve(qtbot) -> None:
    plots = MetricPlots()
    qtbot.addWidget(plots)
    plots.resize(900, 600)
    plots.show()
    h = _spiky_history()
    plots.set_runs([("r", h, QColor("#4e9de6"))])
    linear = _share_of_y_range(plots, 1.0, 2.0)
    assert linear < 0.05  # the reported problem: the real curve is a flat line at the bottom

    with qtbot.waitSignal(plots.loss_log_changed, timeout=1_000) as changed:
        plots.loss_log.setChecked(True)  # the box over the loss plot
    assert changed.args == [True] and plots.loss_is_log
    assert plots.loss_plot.getAxis("left").logMode  # the plot itself is in log mode
    assert plots.curve("r", "loss").opts["logMode"][1]
    assert _share_of_y_range(plots, 1.0, 2.0) > 3 * linear

    plots.set_loss_log(False)
    assert not plots.loss_log.isChecked() and not plots.loss_plot.getAxis("left").logMode


def test_the_log_scale_box_leaves_the_loss_title_readable(qtbot) -> None:
    """At the plots' width in a 1280x800 window (about 540 px) the box sat over the title's end."""
    plots = MetricPlots()
    qtbot.addWidget(plots)
    plots.resize(540, 540)
    plots.show()
    qtbot.waitExposed(plots)
    title = plots.loss_plot.titleLabel.item  # the title's text itself, not its centred row
    text = plots.view.mapFromScene(title.sceneBoundingRect()).boundingRect()
    box = plots.loss_log.geometry()
    assert box.width() > 0 and not box.intersects(text), (box, text)
    assert plots.view.rect().contains(box)


def test_the_log_loss_axis_also_holds_still_while_live(qtbot) -> None:
    plots = MetricPlots()
    qtbot.addWidget(plots)
    plots.set_loss_log(True)
    plots.set_live(True)
    h = _spiky_history()
    plots.set_runs([("r", h, QColor("#4e9de6"))])
    y0, y1 = plots.loss_plot.getViewBox().viewRange()[1]
    assert y0 < 0.0 < np.log10(35.0) < y1  # log10 units: the spike and the values near 1 are in view


def test_the_loss_axis_scale_is_remembered(qtbot, qt_settings) -> None:
    from alexgui.qt.main_window import MainWindow

    first = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(first)
    assert not first.plots.loss_is_log
    first.plots.loss_log.setChecked(True)
    first.close()
    second = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(second)
    assert second.plots.loss_is_log and second.plots.loss_log.isChecked()


# -- feature maps sized to the panel ----------------------------------------------------------------


def _maps(count: int, side: int) -> np.ndarray:
    return np.random.default_rng(count).random((count, side, side)).astype(np.float32)


def _fits(panel: FeatureMapsPanel, height_too: bool) -> bool:
    room = panel.room()
    grid = panel.grid
    return grid.width() <= room.width() and (not height_too or grid.height() <= room.height())


@pytest.mark.parametrize(("layer", "count", "side"), [("conv1", 96, 55), ("conv5", 256, 13)])
def test_feature_map_tiles_follow_the_panel_width_and_fit(qtbot, layer: str, count: int, side: int) -> None:
    panel = FeatureMapsPanel()
    qtbot.addWidget(panel)
    panel.resize(420, 700)
    panel.show()
    qtbot.waitExposed(panel)
    panel.show_maps(layer, _maps(count, side))
    narrow_tile = panel.tile_px
    assert panel.grid.count == count
    assert _fits(panel, height_too=layer == "conv1")  # conv1's 96 maps all in view; conv5 scrolls, never sideways
    assert narrow_tile >= 20  # legible: the old fixed 16 columns drew conv1 at about 20 px in any panel

    panel.resize(1000, 700)
    qtbot.waitUntil(lambda: panel.tile_px > narrow_tile, timeout=5_000)  # redrawn once the resize settles
    assert _fits(panel, height_too=layer == "conv1")

    panel.resize(300, 700)
    qtbot.waitUntil(lambda: panel.tile_px < narrow_tile, timeout=5_000)
    assert _fits(panel, height_too=False)


def test_a_tab_widgets_pages_are_dark_under_the_theme(qtbot) -> None:
    """The Evaluation and Experiments windows' tab pages were white (the palette's), under the theme's
    light hint text: unreadable."""
    from PySide6.QtWidgets import QApplication, QLabel, QTabWidget, QVBoxLayout, QWidget

    from alexgui.qt.app import apply_theme

    apply_theme(QApplication.instance())
    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    page = QWidget()
    QVBoxLayout(page).addWidget(QLabel("a hint"))
    tabs.addTab(page, "Cell images")
    tabs.resize(300, 200)
    tabs.show()
    qtbot.waitExposed(tabs)
    image = tabs.grab().toImage()
    corner = image.pixelColor(tabs.width() // 2, tabs.height() - 12)  # inside the page, below its label
    assert corner.lightness() < 80, corner.name()

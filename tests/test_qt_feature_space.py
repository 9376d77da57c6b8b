"""The Feature space panel: a map computed on a worker, a click on a point (its path emitted, its fc7
neighbours and classification shown), thumbnails when zoomed in, cancel, the cache, the layout."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt

from alexgui.engine.inference import retrieval as R
from alexgui.engine.understand import feature_space as F
from alexgui.errors import Cancelled
from alexgui.qt.panels.feature_space import NEIGHBOURS, FeatureSpacePanel
from alexgui.qt.panels.feature_space_view import MAX_THUMBS
from tests.explore_helpers import MeanColourPredictor

WAIT_MS = 30000
CLASSES = ("red", "green", "blue", "grey")


def stand_in_index(root: Path, n: int = 200, dim: int = 512) -> R.GalleryIndex:
    """n small image files in four class folders, with random fc7-like vectors clustered by class."""
    rng = np.random.default_rng(11)
    centres = np.abs(rng.normal(size=(len(CLASSES), dim))) * 2
    paths, rows = [], []
    for i in range(n):
        c = i % len(CLASSES)
        path = root / CLASSES[c] / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = [(200, 40, 40), (40, 180, 60), (40, 60, 200), (128, 128, 128)][c]
        Image.new("RGB", (24, 20), colour).save(path)
        paths.append(str(path))
        rows.append(np.abs(centres[c] + rng.normal(size=dim)))
    return R.GalleryIndex(paths, np.array(rows, np.float32), "fp", {}, str(root))


def _panel(qtbot, width: int = 1000, height: int = 640) -> FeatureSpacePanel:  # type: ignore[no-untyped-def]
    panel = FeatureSpacePanel()
    qtbot.addWidget(panel)
    panel.resize(width, height)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def _pca_map(qtbot, panel: FeatureSpacePanel) -> F.FeatureMap:  # type: ignore[no-untyped-def]
    panel.method.setCurrentIndex(panel.method.findData("pca"))
    with qtbot.waitSignal(panel.mapReady, timeout=WAIT_MS) as ready:
        panel.compute_button.click()
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT_MS)
    return ready.args[0]


def click_point(qtbot, panel: FeatureSpacePanel, row: int) -> None:  # type: ignore[no-untyped-def]
    """A real mouse click on the map where point `row` is drawn."""
    assert panel.map is not None
    x, y = panel.map.coords[row]
    plot = panel.view.plot
    scene = panel.view.view.mapViewToScene(QPointF(float(x), float(y)))
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=plot.mapFromScene(scene))


def test_compute_click_and_neighbours(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index = stand_in_index(tmp_path / "gallery")
    panel = _panel(qtbot)
    assert not panel.compute_button.isEnabled()
    panel.set_index(index)
    fmap = _pca_map(qtbot, panel)
    assert fmap.method == "pca" and fmap.coords.shape == (200, 2) and panel.map is fmap
    assert len(panel.view.scatter.data) == 200  # one item for all the points
    assert all(name in panel.view.legend.text() for name in CLASSES) and "50" in panel.view.legend.text()
    assert "PCA map of 200 images (computed)" in panel.status.text()
    # The point farthest from the others, so that the click lands on it alone.
    d = np.linalg.norm(fmap.coords[:, None] - fmap.coords[None], axis=2)
    np.fill_diagonal(d, np.inf)
    row = int(d.min(1).argmax())
    with qtbot.waitSignal(panel.detailsReady, timeout=WAIT_MS) as details:
        with qtbot.waitSignal(panel.image_clicked, timeout=WAIT_MS) as clicked:
            click_point(qtbot, panel, row)
    assert clicked.args == [index.paths[row]] and panel.selected == row
    found = details.args[0]
    brute = np.argsort(np.linalg.norm(index.features - index.features[row], axis=1), kind="stable")[1 : NEIGHBOURS + 1]
    assert [r for r, _ in found["neighbours"]] == brute.tolist()
    assert all(b.isVisible() for b in panel.neighbour_buttons)
    assert panel.neighbour_buttons[0].toolTip().startswith(index.paths[brute[0]])
    assert Path(index.paths[row]).name in panel.caption.text() and panel.picture.pixmap() is not None
    assert found["classified"] is None and panel.prediction.text() == ""
    assert len(panel.view.marks.data) == 1 + NEIGHBOURS
    # With a model, the clicked image is classified too; clicking a neighbour goes on from there.
    with qtbot.waitSignal(panel.detailsReady, timeout=WAIT_MS) as details:
        panel.set_predictor(MeanColourPredictor())
    assert details.args[0]["classified"].top[0].label in ("red", "blue") and "Model:" in panel.prediction.text()
    with qtbot.waitSignal(panel.image_clicked, timeout=WAIT_MS) as clicked:
        with qtbot.waitSignal(panel.detailsReady, timeout=WAIT_MS):
            qtbot.mouseClick(panel.neighbour_buttons[2], Qt.MouseButton.LeftButton)
    assert clicked.args == [index.paths[brute[2]]] and panel.selected == brute[2]


def test_thumbnails_when_zoomed_in_points_when_zoomed_out(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index = stand_in_index(tmp_path / "gallery")
    panel = _panel(qtbot)
    panel.set_index(index)
    fmap = _pca_map(qtbot, panel)
    assert panel.view.shown == {}  # 200 thumbnails would pile up at this zoom
    x, y = fmap.coords[0]
    with qtbot.waitSignal(panel.view.thumbnailsShown, timeout=WAIT_MS, check_params_cb=lambda n: n > 0):
        panel.view.view.setRange(xRange=(x - 0.15, x + 0.15), yRange=(y - 0.15, y + 0.15), padding=0)
    qtbot.waitUntil(lambda: panel.view._job is None, timeout=WAIT_MS)
    (x0, x1), (y0, y1) = panel.view.view.viewRange()
    inside = {i for i, (px, py) in enumerate(fmap.coords) if x0 <= px <= x1 and y0 <= py <= y1}
    assert set(panel.view.shown) == inside and 0 < len(inside) <= MAX_THUMBS
    with qtbot.waitSignal(panel.view.thumbnailsShown, timeout=WAIT_MS, check_params_cb=lambda n: n == 0):
        panel.fit_button.click()
    assert panel.view.shown == {}


def test_cancel_and_errors(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def slow(features, method, seed, progress, stop, where):  # type: ignore[no-untyped-def]
        for i in range(1000):
            if stop.is_set():
                raise Cancelled("mapping cancelled")
            progress(i, 1000)
            time.sleep(0.01)
        raise AssertionError("not cancelled")

    monkeypatch.setattr(F, "embed", slow)
    panel = _panel(qtbot)
    panel.set_index(stand_in_index(tmp_path / "gallery", n=20, dim=16))
    with qtbot.waitSignal(panel.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        panel.compute()
        qtbot.waitUntil(lambda: panel.progress.isVisible() and panel.progress.bar.value() > 0, timeout=WAIT_MS)
        assert not panel.compute_button.isEnabled()
        panel.progress.cancel_button.click()
    assert panel.map is None and "cancelled" in panel.status.text() and not panel.progress.isVisible()
    assert panel.compute_button.isEnabled()
    # Too few images for t-SNE: the engine's message, in the panel.
    two = R.GalleryIndex(["/g/a/1.png", "/g/b/2.png"], np.eye(2, 8, dtype=np.float32), "fp", {}, "/g")
    panel.set_index(two)
    with qtbot.waitSignal(panel.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        panel.compute()
    assert "t-SNE needs at least 3 images" in panel.error and "/g" in panel.status.text()


def test_a_cached_map_shows_when_the_index_is_set(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = R.save_index(stand_in_index(tmp_path / "gallery", n=40, dim=32), tmp_path / "index")
    F.compute_map(folder, "pca")
    panel = _panel(qtbot)
    panel.method.setCurrentIndex(panel.method.findData("pca"))
    with qtbot.waitSignal(panel.mapReady, timeout=WAIT_MS) as ready:
        panel.set_index(R.load_index(folder))
    assert ready.args[0].from_cache and "from the cache" in panel.status.text()
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT_MS)
    panel.set_index(None)
    assert panel.map is None and not panel.compute_button.isEnabled() and len(panel.view.scatter.data) == 0


def test_fits_a_small_screen_and_a_narrow_dock(qtbot) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QApplication

    from alexgui.qt.app import apply_theme

    apply_theme(QApplication.instance())  # the app's padding, as users see it (other tests may not have set it)
    panel = _panel(qtbot, 1280, 800)
    hint = panel.minimumSizeHint()
    assert hint.width() <= 700 and hint.height() <= 600
    assert panel.splitter.orientation() == Qt.Orientation.Horizontal
    panel.resize(380, 700)  # the side dock's width at 1280x800
    qtbot.waitUntil(lambda: panel.splitter.orientation() == Qt.Orientation.Vertical, timeout=WAIT_MS)
    assert panel.width() == 380 and panel.minimumSizeHint().width() <= 380


def test_in_the_app_the_retrieval_index_opens_on_the_map(qtbot, qt_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from alexgui.qt.explorer import install_explorer
    from alexgui.qt.main_window import MainWindow

    window = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    install_explorer(window)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    try:
        explorer = window.explorer
        retrieval = explorer.retrieval
        assert not retrieval.map_button.isEnabled()
        explorer.act_map.trigger()  # no index yet: a word on how to get one, no window
        assert not explorer.space.window.isVisible()
        index = stand_in_index(tmp_path / "gallery", n=40, dim=64)
        retrieval.index = index
        retrieval.indexReady.emit(index)
        assert retrieval.map_button.isEnabled()
        retrieval.map_button.click()
        assert explorer.space.window.isVisible() and explorer.space.panel.index is index
        panel = explorer.space.panel
        assert panel.predictor is None or panel.predictor is explorer.model.predictor
        assert explorer.space.window.width() <= 1280 and explorer.space.window.height() <= 800
        panel.method.setCurrentIndex(panel.method.findData("pca"))
        with qtbot.waitSignal(panel.mapReady, timeout=WAIT_MS):
            panel.compute_button.click()
        newer = stand_in_index(tmp_path / "other", n=30, dim=64)
        retrieval.index = newer
        retrieval.indexReady.emit(newer)  # a new index while the window is open: mapped in its place
        assert panel.index is newer
    finally:
        window.explorer.shutdown()

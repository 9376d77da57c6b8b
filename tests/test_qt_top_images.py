"""The Top images window: a unit's nine patches from a gallery, opened from the Filters and Feature maps panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alexgui.qt.panels.filters import FiltersPanel
from alexgui.qt.panels.top_images import TopImagesPanel
from tests.helpers import make_image
from tests.test_top_units import predictor


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    for i in range(12):
        make_image(i % 4, seed=900 + i, size=(90, 80)).save(tmp_path / f"{i:02d}.png")
    return tmp_path


def test_a_conv_unit_shows_nine_patches_and_the_whole_image_on_hover(qtbot, gallery: Path,  # type: ignore[no-untyped-def]
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXGUI_CACHE_DIR", str(gallery.parent / "cache"))
    panel = TopImagesPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_gallery(gallery)
    panel.show_unit(predictor(), "pool5", 7)  # a pool layer's channel is its conv's
    qtbot.waitUntil(lambda: "drive it most" in panel.title.text(), timeout=30000)
    assert "conv5 · unit 7" in panel.title.text() and "the patches" in panel.title.text()
    assert panel.layer_box.currentText() == "conv5" and panel.unit_spin.value() == 7
    assert all(not cell.pixmap().isNull() for cell in panel.cells)
    assert len(panel.entries) == 9 and all(e.box is not None for e in panel.entries)
    values = [e.activation for e in panel.entries]
    assert values == sorted(values, reverse=True)
    panel.show_whole(4)
    assert panel.whole_caption.text().startswith("#5: ") and not panel.whole.pixmap().isNull()
    whole = panel._wholes[4]
    assert whole is not None and whole.shape == (224, 224, 3)
    x0, y0, x1, y1 = panel.entries[4].box or (0, 0, 0, 0)
    assert (whole[y0, x0:x1] == [255, 200, 0]).all()  # the box is drawn where the patch came from


def test_an_fc_unit_shows_whole_crops(qtbot, gallery: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ALEXGUI_CACHE_DIR", str(gallery.parent / "cache"))
    panel = TopImagesPanel()
    qtbot.addWidget(panel)
    panel.set_gallery(gallery)
    panel.show_unit(predictor(), "fc7", 11)
    qtbot.waitUntil(lambda: "drive it most" in panel.title.text(), timeout=30000)
    assert "the images that" in panel.title.text()
    assert all(e.box is None for e in panel.entries) and panel._views[0] is not None
    assert panel._views[0].shape == (224, 224, 3)


def test_no_model_is_said(qtbot, gallery: Path) -> None:  # type: ignore[no-untyped-def]
    panel = TopImagesPanel()
    qtbot.addWidget(panel)
    panel.set_gallery(gallery)
    panel.run("conv1", 0)
    assert "No PyTorch model" in panel.title.text()


def test_a_kernel_click_in_the_filters_panel_asks_for_its_unit(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_kernels(np.random.default_rng(0).normal(0, 0.01, (96, 3, 11, 11)).astype(np.float32))
    panel.units_on_click = True
    with qtbot.waitSignal(panel.unit_clicked) as blocker:
        panel.grids[1].tileClicked.emit(5)  # tower 1's sixth kernel is kernel 53
    assert blocker.args == ["conv1", 53]
    assert not panel.viewer.isVisible()


def test_in_the_app_a_filters_click_opens_the_units_top_images(qtbot, qt_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from alexgui.qt.explorer import install_explorer
    from alexgui.qt.main_window import MainWindow
    from tests.explore_helpers import train_colour_checkpoint, write_colour_folder

    monkeypatch.setenv("ALEXGUI_CACHE_DIR", str(tmp_path / "cache"))
    window = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    install_explorer(window)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    try:
        explorer = window.explorer
        model = train_colour_checkpoint(tmp_path / "m.safetensors")
        explorer.load_model(str(model))
        qtbot.waitUntil(lambda: explorer.model.predictor is not None, timeout=60000)
        qtbot.waitUntil(lambda: "conv1" in explorer.filters.kernels, timeout=10000)
        photos = tmp_path / "photos"
        write_colour_folder(photos, per_class=5)
        explorer.units.panel.set_gallery(photos)
        explorer.units._chosen = str(photos)
        explorer.filters.grids[0].tileClicked.emit(2)
        assert explorer.units.window.isVisible()
        panel = explorer.units.panel
        qtbot.waitUntil(lambda: "drive it most" in panel.title.text(), timeout=60000)
        assert "conv1 · unit 2" in panel.title.text() and len(panel.entries) == 9
        # A window of its own that fits a 1280x800 screen.
        assert explorer.units.window.width() <= 1280 and explorer.units.window.height() <= 800
    finally:
        window.explorer.shutdown()


def test_a_second_unit_asked_for_during_a_pass_shows_its_own_progress(qtbot, gallery: Path,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXGUI_CACHE_DIR", str(gallery.parent / "cache"))
    panel = TopImagesPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_gallery(gallery)
    p = predictor()
    panel.show_unit(p, "conv1", 5)
    qtbot.waitUntil(panel.is_busy, timeout=10000)
    panel.show_unit(p, "conv2", 200)  # wider than conv1's 96: the box must still say 200
    qtbot.waitUntil(lambda: panel.is_busy() and "conv2 · unit 200" in panel.title.text(), timeout=30000)
    assert panel.progress.isVisible() and "Cancelled" not in panel.title.text()
    qtbot.waitUntil(lambda: "drive it most" in panel.title.text(), timeout=60000)
    assert "conv2 · unit 200" in panel.title.text() and panel.unit_spin.value() == 200


def test_another_model_drops_a_running_pass(qtbot, gallery: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ALEXGUI_CACHE_DIR", str(gallery.parent / "cache"))
    panel = TopImagesPanel()
    qtbot.addWidget(panel)
    panel.set_gallery(gallery)
    panel.show_unit(predictor(), "fc6", 1)
    qtbot.waitUntil(panel.is_busy, timeout=10000)
    other = predictor("torchvision")
    panel.set_predictor(other)
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=60000)
    assert panel.tops is None and panel.predictor is other

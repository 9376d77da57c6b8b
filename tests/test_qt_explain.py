"""The Explain window, offscreen (issue 15 item 2): a Classify card's Explain button opens it on the
card's image and top class; the method and any of the top-5 classes can be chosen; occlusion runs in
the worker with a bar and can be cancelled; the opacity redraws the overlay; Save PNG writes the
figure; a model without a PyTorch network is refused in the panel; the Evaluation images open here."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from alexgui.engine.inference.predict import Classified
from alexgui.qt.panels.classify_cards import ResultCard
from alexgui.qt.panels.explain import ExplainPanel
from tests.explore_helpers import MeanColourPredictor, colour_image, small_torch_predictor

pytestmark = pytest.mark.timeout(300)
WAIT_MS = 60_000


def image_u8(seed: int = 0) -> np.ndarray:
    return np.asarray(colour_image("red", seed, size=(256, 256)))


@pytest.fixture
def panel(qtbot) -> ExplainPanel:  # type: ignore[no-untyped-def]
    p = ExplainPanel()
    qtbot.addWidget(p)
    p.resize(860, 620)
    p.show()
    yield p
    p.shutdown()


def explained(qtbot, panel: ExplainPanel, start) -> object:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(panel.explained, timeout=WAIT_MS) as blocker:
        start()
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT_MS)
    return blocker.args[0]


def test_the_top_class_is_explained_and_any_of_the_top_5_can_be_chosen(qtbot, panel: ExplainPanel) -> None:  # type: ignore[no-untyped-def]
    predictor = small_torch_predictor(num_classes=7)
    u8 = image_u8()
    e = explained(qtbot, panel, lambda: panel.show_image("red.png", u8, predictor, true_index=6))
    probs, _ = predictor.predict_u8(u8[None])
    order = list(np.argsort(-probs[0]))
    assert e.method == "gradcam" and e.class_index == order[0]
    listed = [panel.class_box.itemData(i) for i in range(panel.class_box.count())]
    assert listed[:5] == order[:5]
    assert (6 in order[:5] and len(listed) == 5) or (listed[-1] == 6 and "(true class)" in panel.class_box.itemText(5))
    assert panel.map_view.has_image() and panel.original.has_image()
    assert "red.png" in panel.title.text() and panel.caption.text().startswith("Grad-CAM")
    # The third class of the top 5, then another method: each is a new map for what is chosen.
    e2 = explained(qtbot, panel, lambda: panel.class_box.setCurrentIndex(2))
    assert e2.class_index == order[2]
    e3 = explained(qtbot, panel, lambda: panel.method.setCurrentIndex(panel.method.findData("saliency")))
    assert e3.method == "saliency" and e3.class_index == order[2]
    assert panel.class_box.currentData() == order[2]  # the class list stays this image's top 5


def test_occlusion_shows_a_bar_and_can_be_cancelled(qtbot, panel: ExplainPanel) -> None:  # type: ignore[no-untyped-def]
    predictor = small_torch_predictor(num_classes=3)
    explained(qtbot, panel, lambda: panel.show_image("red.png", image_u8(), predictor))
    assert not panel.patch.isVisible()
    panel.stride.setValue(8)  # 625 windows: long enough to cancel
    panel.method.setCurrentIndex(panel.method.findData("occlusion"))
    assert panel.patch.isVisible() and panel.is_busy()
    qtbot.waitUntil(lambda: panel.progress.isVisible() and panel.progress.bar.maximum() > 0, timeout=WAIT_MS)
    QTest.mouseClick(panel.progress.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT_MS)
    assert "Cancelled" in panel.message.text() and not panel.progress.isVisible()
    assert panel.explanation is not None and panel.explanation.method == "gradcam"  # the last map stays
    # A coarse grid runs to the end.
    panel.patch.setValue(112)
    e = explained(qtbot, panel, lambda: panel.stride.setValue(112))
    assert e.method == "occlusion" and e.map.shape == (224, 224)
    assert "largest drop" in panel.scale.unit


def test_a_setting_changed_during_a_map_starts_the_new_one(qtbot, panel: ExplainPanel) -> None:  # type: ignore[no-untyped-def]
    predictor = small_torch_predictor(num_classes=3)
    explained(qtbot, panel, lambda: panel.show_image("red.png", image_u8(), predictor))
    panel.stride.setValue(8)
    panel.method.setCurrentIndex(panel.method.findData("occlusion"))
    assert panel.is_busy()
    e = explained(qtbot, panel, lambda: panel.method.setCurrentIndex(panel.method.findData("guided-backprop")))
    assert e.method == "guided-backprop"


def test_a_new_image_during_a_map_drops_the_old_images_result(qtbot, panel: ExplainPanel) -> None:  # type: ignore[no-untyped-def]
    """The class list and the map are the new image's, never the one left behind (a new model loaded
    re-explains the image shown, and Explain pressed on another card at once must win)."""
    first, second = small_torch_predictor(num_classes=3), small_torch_predictor(num_classes=7)
    blue = np.asarray(colour_image("blue", 1, size=(256, 256)))
    panel.stride.setValue(8)
    panel.method.setCurrentIndex(panel.method.findData("occlusion"))
    panel.show_image("red.png", image_u8(), first)
    assert panel.is_busy()
    seen = []
    panel.explained.connect(seen.append)
    panel.stride.blockSignals(True)
    panel.stride.setValue(112)
    panel.patch.setValue(112)
    panel.stride.blockSignals(False)
    panel.show_image("blue.png", blue, second)
    qtbot.waitUntil(lambda: bool(seen) and not panel.is_busy(), timeout=WAIT_MS)
    probs, _ = second.predict_u8(blue[None])
    assert all(e.crop.shape == (224, 224, 3) for e in seen)
    np.testing.assert_array_equal(seen[-1].crop, blue[16:240, 16:240])
    assert panel.class_box.count() == 5 and panel.class_box.itemData(0) == int(probs[0].argmax())
    assert all(np.array_equal(e.crop, blue[16:240, 16:240]) for e in seen)


def test_opacity_redraws_and_save_png_writes_the_figure(qtbot, panel: ExplainPanel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    predictor = small_torch_predictor(num_classes=3)
    explained(qtbot, panel, lambda: panel.show_image("red.png", image_u8(), predictor))
    before = panel.map_view.pixmap().toImage()
    panel.opacity.setValue(0)  # no map: the overlay is the photo itself
    after = panel.map_view.pixmap().toImage()
    assert before != after
    assert panel.save_png(tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as saved:
        assert saved.width == 2 * 224 + 8 and saved.height > 224
        left = np.asarray(saved.convert("RGB"))[:224, :224]
    np.testing.assert_array_equal(left, image_u8()[16:240, 16:240])
    assert "Saved" in panel.message.text()
    assert not panel.save_png(tmp_path / "out.png" / "x.png")  # a file where a folder would be
    assert "Not saved" in panel.message.text()
    view = panel.open_larger()
    assert view is not None and view.isVisible() and view.width() > 448
    view.close()


def test_a_model_without_a_pytorch_network_is_refused_in_the_panel(qtbot, panel: ExplainPanel) -> None:  # type: ignore[no-untyped-def]
    panel.show_image("red.png", image_u8(), MeanColourPredictor())
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT_MS)
    assert "need the PyTorch model" in panel.message.text()
    assert panel.explanation is None and not panel.save_button.isEnabled()


def test_a_cards_explain_button_asks_for_its_result(qtbot) -> None:  # type: ignore[no-untyped-def]
    result = Classified("red.png", image=image_u8())
    card = ResultCard(result, ["red", "blue"], "centre crop")
    qtbot.addWidget(card)
    assert card.explain_button.isEnabled()
    failed = ResultCard(Classified("x.png", error="not an image"), ["red", "blue"], "centre crop")
    qtbot.addWidget(failed)
    assert not hasattr(failed, "explain_button")


def test_explain_on_a_classify_card_opens_the_window_on_that_image(qtbot, qt_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from alexgui.qt.explorer import install_explorer
    from alexgui.qt.main_window import MainWindow

    window = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    explorer = install_explorer(window)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    try:
        predictor = small_torch_predictor(num_classes=2)
        explorer.model.set_predictor(predictor)
        colour_image("blue", 3, size=(256, 256)).save(tmp_path / "blue.png")
        with qtbot.waitSignal(explorer.classify.finished, timeout=WAIT_MS):
            explorer.classify.classify_paths([tmp_path / "blue.png"])
        [card] = explorer.classify.card_widgets()
        with qtbot.waitSignal(explorer.explain.explained, timeout=WAIT_MS) as blocker:
            QTest.mouseClick(card.explain_button, Qt.MouseButton.LeftButton)
        assert explorer.explain_window.isVisible()
        assert blocker.args[0].class_index == card.result.top[0].index
        assert explorer.explain.name == "blue.png"
        # An Evaluation image opens there too, with its true class offered.
        with qtbot.waitSignal(explorer.explain.explained, timeout=WAIT_MS):
            explorer.evaluation.explainImage.emit(str(tmp_path / "blue.png"), 1)
        qtbot.waitUntil(lambda: not explorer.explain.is_busy(), timeout=WAIT_MS)
        assert explorer.explain.true_index == 1
        assert any("(true class)" in explorer.explain.class_box.itemText(i) for i in range(explorer.explain.class_box.count()))
    finally:
        window.close()


def test_the_evaluation_panels_explain_button_sends_the_selected_image(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QListWidgetItem

    from alexgui.qt.panels.evaluation import EvaluationPanel

    panel = EvaluationPanel()
    qtbot.addWidget(panel)
    assert not panel.explain_button.isEnabled()
    item = QListWidgetItem("blue 90%")
    item.setData(Qt.ItemDataRole.UserRole, "/data/red/really_blue.png")
    item.setData(Qt.ItemDataRole.UserRole + 1, 0)
    panel.cell_images.addItem(item)
    panel.tabs.setCurrentIndex(0)
    panel.cell_images.setCurrentItem(item)
    assert panel.explain_button.isEnabled()
    with qtbot.waitSignal(panel.explainImage, timeout=5000) as sent:
        QTest.mouseClick(panel.explain_button, Qt.MouseButton.LeftButton)
    assert sent.args == ["/data/red/really_blue.png", 0]
    panel.tabs.setCurrentIndex(1)  # the per-class table: nothing to explain
    assert not panel.explain_button.isEnabled()


def test_the_explain_job_stops_between_batches() -> None:
    """The panel's worker function honours the stop event (the Cancel button's)."""
    from alexgui.qt.panels.explain import _explain_job

    stop = threading.Event()
    stop.set()
    out = list(_explain_job(small_torch_predictor(3), image_u8(), "occlusion", None, 32, 16, stop,
                            lambda *a: None))
    assert out == []

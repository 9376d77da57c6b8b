"""The Evaluation panel, offscreen (issue 14 item 2): run an evaluation, click a confusion cell with the
mouse and see exactly that cell's images; the per-class table sorts; export writes the report folder;
a double-click opens an image in Classify; the log's offer runs its action with one click."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.understand.evaluation_files import REPORT_FILES
from alexgui.qt.panels.evaluation import EvaluationPanel
from alexgui.qt.panels.log import LogPanel
from tests.explore_helpers import colour_image, train_colour_checkpoint, write_colour_folder

pytestmark = pytest.mark.timeout(300)
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_colour_checkpoint(tmp_path_factory.mktemp("ckpt") / "colours.safetensors")


def _folder(root: Path) -> Path:
    write_colour_folder(root, per_class=3, seed=5)
    for i in range(2):
        colour_image("blue", 800 + i).save(root / "red" / f"really_blue_{i}.png")
    return root


def test_a_click_on_a_cell_shows_exactly_its_images(qtbot, checkpoint: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = EvaluationPanel()
    qtbot.addWidget(panel)
    panel.resize(1180, 760)
    panel.show()
    panel.chooser.set_predictor(load_predictor(str(checkpoint), device="cpu"))
    panel.set_images(_folder(tmp_path / "data"))
    with qtbot.waitSignal(panel.evaluated, timeout=WAIT_MS) as blocker:
        panel.run()
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT_MS)
    report = blocker.args[0]
    assert panel.error == "" and report.n == 8
    assert f"Top-1 error {100 * report.top1_error:.1f}%" in panel.summary.text()
    names = panel.confusion.names
    assert names == ["red", "blue"] and panel.confusion.matrix.sum() == 8
    # The cell "true red, predicted blue", clicked with the mouse where it is drawn.
    red, blue = names.index("red"), names.index("blue")
    centre = panel.confusion.cell_rect(red, blue).center()
    QTest.mouseClick(panel.confusion, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    expected = {r.path for r in report.results if r.true_index == red and r.predicted == blue}
    shown = {panel.cell_images.item(i).data(Qt.ItemDataRole.UserRole) for i in range(panel.cell_images.count())}
    assert shown == expected and {Path(p).name for p in shown} == {"really_blue_0.png", "really_blue_1.png"}
    assert "true red, predicted blue: 2 images" in panel.cell_caption.text()
    assert panel.confusion.cell_at(QPoint(centre.x(), centre.y())) == (red, blue)
    assert panel.confusion.describe(red, red).startswith("true red, predicted red")
    # The per-class table: by class name, A to Z, until a header is clicked; then sorted by recall.
    assert panel.table.rowCount() == 2
    assert [panel.table.item(i, 0).text() for i in range(2)] == ["blue", "red"]
    assert panel.table.horizontalHeaderItem(3).text() == "recall %"
    panel.table.sortItems(3, Qt.SortOrder.AscendingOrder)
    assert panel.table.item(0, 0).text() == "red"  # red lost two images to blue
    # The worst images, and a double-click that opens one in Classify.
    assert panel.worst.count() == 8
    with qtbot.waitSignal(panel.openInClassify, timeout=5000) as opened:
        panel.cell_images.itemDoubleClicked.emit(panel.cell_images.item(0))
    assert opened.args[0] in expected
    panel.export(tmp_path / "report")  # in the panel's job: the window does not wait for the plots
    qtbot.waitUntil(lambda: not panel.is_busy() and "Saved the report" in panel.summary.text(), timeout=WAIT_MS)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(REPORT_FILES)
    panel.shutdown()


def test_no_model_or_no_images_is_said_in_the_panel(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = EvaluationPanel()
    qtbot.addWidget(panel)
    panel.run()
    assert "Choose a model first" in panel.error


def test_a_folder_with_no_class_of_the_model_is_an_error_in_the_panel(qtbot, checkpoint: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "cats").mkdir()
    colour_image("red", 3).save(tmp_path / "cats" / "c.png")
    panel = EvaluationPanel()
    qtbot.addWidget(panel)
    panel.chooser.set_predictor(load_predictor(str(checkpoint), device="cpu"))
    panel.set_images(tmp_path)
    panel.run()
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT_MS)
    assert "no class folder names a class of the model" in panel.error and "cats" in panel.error
    assert panel.run_button.isEnabled()


def test_the_logs_offer_is_one_click(qtbot) -> None:  # type: ignore[no-untyped-def]
    log = LogPanel()
    qtbot.addWidget(log)
    log.show()
    taken: list[int] = []
    log.offer("Training of run-1 ended.", "Evaluate this run", lambda: taken.append(1))
    assert log.offer_bar.isVisible() and log.offer_button.text() == "Evaluate this run"
    assert "Training of run-1 ended." in log.text()
    QTest.mouseClick(log.offer_button, Qt.MouseButton.LeftButton)
    assert taken == [1] and not log.offer_bar.isVisible()

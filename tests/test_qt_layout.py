"""The window on a 1280x800 screen: it fits whatever is open, Reset layout brings the first launch
back, and saved geometry never puts it off or past the screen (offscreen Qt).

The tests here need a 1280x800 screen. pytest's offscreen screen is 800x600, so when this process has
that one, the whole module runs once more in a child process whose offscreen screen is 1280x800 (Qt's
offscreen "configfile"), and each test here reports its twin's outcome there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QTabBar

from alexgui.qt.elided_label import ElidedLabel
from alexgui.qt.main_window import MainWindow
from alexgui.qt.settings import AppSettings
from alexgui.qt.window_fit import fit_rect
from tests.test_qt_runs import make_run

pytestmark = pytest.mark.timeout(300)
SCREEN = QSize(1280, 800)
LONG = "not on this computer: " + "a very long message without any break in it " * 12


# -- running on a 1280x800 screen -------------------------------------------------------------------


@pytest.fixture(scope="module")
def child_outcomes(qapp, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str] | None:
    """None when this process has a 1280x800 screen; else this module's outcomes in a child that has one."""
    if qapp.primaryScreen().size() == SCREEN:
        return None
    folder = tmp_path_factory.mktemp("laptop-screen")
    config = folder / "screen.json"
    config.write_text(json.dumps({"screens": [{"name": "laptop", "x": 0, "y": 0, "width": SCREEN.width(),
                                               "height": SCREEN.height(), "logicalDpi": 96, "logicalBaseDpi": 96,
                                               "dpr": 1}]}))  # fmt: skip
    report = folder / "junit.xml"
    env = dict(os.environ, QT_QPA_PLATFORM=f"offscreen:configfile={config}")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-p", "no:randomly",
         f"--junitxml={report}", __file__],
        cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    if not report.is_file():
        pytest.fail(f"the 1280x800 child run left no report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        outcomes[case.get("name", "")] = (
            "passed" if problem is None and skipped is None
            else f"skipped: {skipped.get('message')}" if skipped is not None
            else f"failed: {problem.get('message')}\n{problem.text or ''}"[-4000:]
        )  # fmt: skip
    return outcomes


@pytest.fixture
def on_laptop(request: pytest.FixtureRequest, child_outcomes: dict[str, str] | None) -> bool:
    """True when the test is to run here; else the child's outcome of this test is asserted."""
    if child_outcomes is None:
        return True
    outcome = child_outcomes.get(request.node.name, "missing from the child's report")
    assert outcome == "passed", outcome
    return False


def build(qtbot, settings: AppSettings) -> MainWindow:  # type: ignore[no-untyped-def]
    """The app's window as `alexgui gui` builds it (every panel docked), shown as at first launch
    (1280x800 with its frame on this 1280x800 screen)."""
    from alexgui.qt.explorer import install_explorer

    window = MainWindow(settings, devices=[("cpu", "CPU"), ("cuda:0", "GPU 0: NVIDIA H200 with a long marketing name")])
    qtbot.addWidget(window)
    install_explorer(window)
    window.show()
    settle()
    return window


def settle() -> None:
    for _ in range(5):
        QApplication.processEvents()


def docks(window: MainWindow) -> list[QDockWidget]:
    return sorted(window.findChildren(QDockWidget), key=lambda d: d.objectName())


def layout_of(window: MainWindow) -> dict[str, tuple]:
    """Each dock's area, floating, hidden, and the docks it is tabbed with."""
    return {
        d.objectName(): (window.dockWidgetArea(d), d.isFloating(), d.isHidden(),
                         sorted(t.objectName() for t in window.tabifiedDockWidgets(d)))
        for d in docks(window)
    }  # fmt: skip


def front_tabs(window: MainWindow) -> set[str]:
    """The titles of the docks in front of their tab groups."""
    return {bar.tabText(bar.currentIndex()) for bar in window.findChildren(QTabBar)
            if bar.isVisible() and bar.count() > 1 and bar.parent() is window}  # fmt: skip


def assert_fits(window: MainWindow) -> None:
    settle()
    available = window.screen().availableGeometry()
    frame = window.frameGeometry()
    assert available.contains(frame), (frame, available)
    assert window.width() <= SCREEN.width() and window.height() <= SCREEN.height()
    # No dock's minimum (nor the sum of the docks and the curves side by side) forces it wider.
    least = window.layout().minimumSize()
    assert least.width() <= window.width() and least.height() <= window.height(), least


# -- the tests -------------------------------------------------------------------------------------


def test_fit_rect_shrinks_and_moves_a_rectangle_into_the_screen() -> None:
    screen = QRect(0, 0, 1280, 800)
    assert fit_rect(QRect(10, 20, 600, 400), screen) == QRect(10, 20, 600, 400)
    assert fit_rect(QRect(0, 0, 1598, 1182), screen) == QRect(0, 0, 1280, 800)  # the window
    assert fit_rect(QRect(5000, 3000, 800, 600), screen) == QRect(480, 200, 800, 600)  # off-screen
    assert fit_rect(QRect(-900, -50, 700, 500), screen) == QRect(0, 0, 700, 500)
    second = QRect(1280, 0, 1920, 1080)  # a second monitor to the right
    assert fit_rect(QRect(1300, 100, 2500, 900), second) == QRect(1280, 100, 1920, 900)


def test_an_elided_label_asks_for_little_width_and_tells_its_text_on_hover(qtbot) -> None:
    label = ElidedLabel()
    qtbot.addWidget(label)
    label.setToolTip("Which backend runs the model")
    label.setText(LONG)
    assert label.minimumSizeHint().width() < 120
    label.resize(200, 20)
    assert label.is_elided() and label.toolTip().startswith(LONG) and "Which backend" in label.toolTip()
    label.setText("Idle")
    assert not label.is_elided() and label.toolTip() == "Which backend runs the model"


def test_the_window_fits_1280x800_with_two_runs_a_long_error_and_every_panel(
    on_laptop: bool, qtbot, qt_settings: AppSettings, tmp_path: Path
) -> None:
    if not on_laptop:
        return
    window = build(qtbot, qt_settings)
    assert_fits(window)
    # The right dock's tabs are whole at first launch (the last one showed as "E" with five tabs).
    [bar] = [b for b in window.findChildren(QTabBar) if b.isVisible() and "Filters" in
             [b.tabText(i) for i in range(b.count())]]  # fmt: skip
    assert all(bar.rect().contains(bar.tabRect(i)) for i in range(bar.count())), [bar.tabText(i) for i in range(bar.count())]
    for name in ("20261129-134500-a-dataset-with-a-long-folder-name", "20261129-134501-another-long-run-name"):
        assert window.open_run(make_run(tmp_path / name, steps=20).path) is not None
    window.monitor.progress.message.setText(LONG)
    window.monitor.progress.message.show()
    window.show_error("Cannot open model", LONG)
    window.device_label.setText(f"Device: {LONG}")
    window.explorer.inference_label.setText(f"Inference: {LONG}")
    assert_fits(window)
    for dock in docks(window):  # every dock shown and brought to the front in turn
        dock.show()
        dock.raise_()
        assert_fits(window)
    assert window.plots.width() >= window.plots.minimumWidth() > 0  # the curves are not pushed under a dock
    # The Experiments window opens beside it, inside the screen, with its form and plot readable.
    window.explorer.experiments_window.show_window()
    experiments = window.explorer.experiments_window
    settle()
    assert window.screen().availableGeometry().contains(experiments.frameGeometry())
    assert experiments.minimumSizeHint().width() <= SCREEN.width()
    panel = window.explorer.experiments
    assert panel.plot.height() >= 240 and panel.run_button.isVisible() and panel.open_folder_button.isVisible()
    assert not panel.run_button.visibleRegion().isEmpty()
    # So does the Explain window, its two pictures side by side and its controls whole.
    explain = window.explorer.explain_window
    explain.show_window()
    settle()
    assert window.screen().availableGeometry().contains(explain.frameGeometry())
    assert explain.minimumSizeHint().width() <= SCREEN.width() and explain.minimumSizeHint().height() <= SCREEN.height()
    view = window.explorer.explain
    assert view.original.width() >= 240 and view.map_view.width() >= 240
    assert not view.save_button.visibleRegion().isEmpty() and not view.opacity.visibleRegion().isEmpty()


def test_training_stopping_does_not_bring_another_panel_forward(on_laptop: bool, qtbot, qt_settings: AppSettings,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    if not on_laptop:
        return
    window = build(qtbot, qt_settings)
    explorer = window.explorer
    explorer.docks["retrieval"].raise_()
    settle()
    run = make_run(tmp_path / "trained-here", steps=2)
    run.last_checkpoint.parent.mkdir(parents=True, exist_ok=True)
    run.last_checkpoint.write_bytes(b"not a checkpoint")  # loading it fails, in the Classify panel
    explorer._on_run_started(str(run.path))
    explorer._on_training_finished("stopped")  # the run's model is loaded for the explorer, in the background
    assert explorer.classify.chooser.is_loading()
    qtbot.waitUntil(lambda: not explorer.classify.chooser.is_loading(), timeout=20_000)
    settle()
    assert "Retrieval" in front_tabs(window)
    explorer.load_model(str(tmp_path / "missing-run"))  # the user picking a model: Classify comes forward
    qtbot.waitUntil(lambda: not explorer.classify.chooser.is_loading(), timeout=20_000)
    settle()
    assert "Classify" in front_tabs(window)


def test_reset_layout_brings_back_the_first_launch_and_that_is_what_is_saved(
    on_laptop: bool, qtbot, qt_settings: AppSettings
) -> None:
    if not on_laptop:
        return
    fresh = build(qtbot, qt_settings)
    first = layout_of(fresh)
    first_front = front_tabs(fresh)
    assert "Filters" in first_front
    assert len(fresh.tabifiedDockWidgets(fresh.explorer.docks["filters"])) == 3  # Classify, Retrieval, Feature maps
    # Make a mess: a dock floated, one hidden, one moved to the bottom, the tabs split apart.
    explorer = fresh.explorer
    explorer.docks["classify"].setFloating(True)
    fresh.log_dock.hide()
    fresh.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, explorer.docks["retrieval"])
    fresh.splitDockWidget(explorer.docks["filters"], explorer.docks["feature_maps"], Qt.Orientation.Vertical)
    fresh.resize(900, 700)
    settle()
    assert layout_of(fresh) != first
    fresh.act_reset_layout.trigger()
    settle()
    assert layout_of(fresh) == first and front_tabs(fresh) == first_front
    bars = [b for b in fresh.findChildren(QTabBar) if b.isVisible() and b.parent() is fresh]
    assert bars and all(b.elideMode() == Qt.TextElideMode.ElideNone and b.usesScrollButtons() for b in bars)
    assert_fits(fresh)
    assert fresh.frameGeometry().size() == fresh.screen().availableGeometry().size()  # 1280x800, frame included
    fresh.close()

    again = build(qtbot, qt_settings)  # the next launch opens with what Reset layout made
    assert layout_of(again) == first
    assert_fits(again)


def test_a_saved_geometry_larger_than_the_screen_or_off_it_is_brought_back(
    on_laptop: bool, qtbot, qt_settings: AppSettings
) -> None:
    if not on_laptop:
        return
    window = build(qtbot, qt_settings)
    window.setGeometry(QRect(QPoint(0, 0), QSize(1598, 1182)))  # the issue's: taller than the screen
    big = window.saveGeometry()
    window.move(5000, 3000)
    far = window.saveGeometry()
    state = window.saveState()
    window.close()
    for geometry in (big, far):
        qt_settings.set_window_state(geometry, state)
        restored = build(qtbot, qt_settings)
        assert_fits(restored)
        restored.close()
        saved, _ = qt_settings.window_state()
        assert saved is not None
        # What closing saved fits too: the next launch opens inside the screen at once.
        probe = MainWindow(qt_settings, devices=[("cpu", "CPU")])
        qtbot.addWidget(probe)
        probe.restoreGeometry(saved)
        assert probe.width() <= SCREEN.width() and probe.height() <= SCREEN.height()


def test_quitting_as_the_trained_model_loads_leaves_no_thread_running(qtbot, qt_settings: AppSettings) -> None:
    """After Stop the run's model starts loading in the Classify panel's model chooser; a window
    closing just then (Quit during training) must end that job too, or its QThread is destroyed
    while running when the interpreter exits."""
    import threading

    from alexgui.qt.explorer import install_explorer
    from alexgui.qt.workers import running_jobs

    window = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(window)
    explorer = install_explorer(window)
    ended = threading.Event()

    def slow_load(stop: threading.Event, progress) -> None:  # type: ignore[no-untyped-def]
        stop.wait(60)
        ended.set()

    job = explorer.classify.chooser.new_job(slow_load)
    job.start()
    assert explorer.classify.chooser.is_busy()
    window.close()
    assert ended.is_set() and not running_jobs()

"""The whole app as a user meets it: explorer panels docked in the main window and kept on one model."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QDockWidget

from alexgui.commands import gui
from alexgui.engine.inference.sources import load_predictor
from alexgui.qt.explorer import install_explorer
from alexgui.qt.main_window import MainWindow
from alexgui.qt.settings import AppSettings
from tests.explore_helpers import (
    MeanColourPredictor,
    colour_image,
    train_colour_checkpoint,
)
from tests.test_qt_panels import drop

WAIT_MS = 60_000


@pytest.fixture
def window(qtbot, qt_settings: AppSettings) -> MainWindow:
    w = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    install_explorer(w)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    yield w
    w.explorer.shutdown()


def test_gui_command_docks_every_panel(qtbot, qt_settings: AppSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("alexgui.qt.main_window.AppSettings", lambda: qt_settings)
    app, w = gui.build(argparse.Namespace(run=[], data=None, model=None))
    qtbot.addWidget(w)
    titles = {d.windowTitle() for d in w.findChildren(QDockWidget)}
    assert {"Training", "Log", "Runs", "Filters", "Classify", "Retrieval", "Feature maps"} <= titles
    # The Experiments panel has a window of its own (Train > Experiments…): it needs more room than a dock.
    assert w.explorer.act_experiments in w.train_menu.actions()
    w.explorer.act_experiments.trigger()
    assert w.explorer.experiments_window.isVisible() and w.explorer.experiments.isVisible()
    w.explorer.shutdown()


def test_closing_the_window_stops_a_running_classification(qtbot, window: MainWindow, tmp_path: Path) -> None:
    """Quitting with a large drop still in progress: the window is closed, not destroyed, before
    the interpreter exits, so the jobs must end on close."""
    import threading

    from alexgui.qt.workers import running_jobs

    started = threading.Event()

    class Slow(MeanColourPredictor):
        def predict_u8(self, u8, ten_crop=False):  # type: ignore[no-untyped-def]
            started.set()
            threading.Event().wait(0.05)
            return super().predict_u8(u8, ten_crop)

    images = []
    for i in range(40):
        path = tmp_path / f"red{i}.png"
        colour_image("red", seed=i).save(path)
        images.append(path)
    window.explorer.classify.set_predictor(Slow())
    window.explorer.classify.classify_paths(images)
    qtbot.waitUntil(started.is_set, timeout=WAIT_MS)
    assert running_jobs()
    window.close()
    assert not window.isVisible() and not running_jobs()


def test_files_dropped_on_the_window_are_classified(qtbot, window: MainWindow, tmp_path: Path) -> None:
    images = []
    for i, colour in enumerate(["red", "blue"]):
        path = tmp_path / f"{colour}.png"
        colour_image(colour, seed=i).save(path)
        images.append(path)
    (tmp_path / "notes.txt").write_text("not an image")
    window.explorer.classify.set_predictor(MeanColourPredictor())
    with qtbot.waitSignal(window.explorer.classify.finished, timeout=WAIT_MS):
        drop(window.plots, [*images, tmp_path / "notes.txt"])  # on the curves, far from the classify panel
    cards = window.explorer.classify.card_widgets()
    assert len(cards) == 3
    results = {Path(c.result.path).name: c.result for c in cards}
    assert results["notes.txt"].error and "notes.txt" in str(results["notes.txt"].path)
    assert results["red.png"].top[0].label == "red" and results["blue.png"].top[0].label == "blue"


def test_a_model_picked_anywhere_reaches_every_panel(qtbot, window: MainWindow, tmp_path: Path) -> None:
    checkpoint = train_colour_checkpoint(tmp_path / "colours.safetensors")
    explorer = window.explorer
    with qtbot.waitSignal(explorer.classify.chooser.predictorChanged, timeout=WAIT_MS):
        window.open_model(checkpoint)  # File > Open checkpoint or ONNX model
    predictor = explorer.classify.predictor
    assert predictor is not None and predictor.class_names == ["red", "blue"]
    assert explorer.retrieval.predictor is predictor
    # the filter grid shows that checkpoint's conv1 kernels, tower 0 first
    expected = load_predictor(str(checkpoint)).model.kernels("conv1")
    assert torch.allclose(torch.as_tensor(explorer.filters.kernels["conv1"]), expected)


def test_live_kernels_from_training_reach_the_filter_grid(window: MainWindow) -> None:
    kernels = {"conv1": torch.randn(96, 3, 11, 11)}
    window.session.kernels.emit(kernels)
    assert torch.equal(torch.as_tensor(window.explorer.filters.kernels["conv1"]), kernels["conv1"])


def test_fast_inference_switch_runs_the_model_on_onnx_runtime(qtbot, window: MainWindow, tmp_path: Path) -> None:
    """Issue 5: the switch exports the model once, every panel then uses ONNX Runtime, answers unchanged."""
    checkpoint = train_colour_checkpoint(tmp_path / "colours.safetensors")
    explorer = window.explorer
    with qtbot.waitSignal(explorer.classify.chooser.predictorChanged, timeout=WAIT_MS):
        window.open_model(checkpoint)
    torch_predictor = explorer.classify.predictor
    assert explorer.inference_label.text() == "Inference: PyTorch (cpu)"
    image = tmp_path / "red.png"
    colour_image("red", seed=9).save(image)
    with qtbot.waitSignal(explorer.classify.finished, timeout=WAIT_MS):
        explorer.classify.classify_paths([image])
    before = explorer.classify.card_widgets()[-1].result

    with qtbot.waitSignal(explorer.classify.chooser.predictorChanged, timeout=WAIT_MS * 3):
        explorer.retrieval.chooser.fast.setChecked(True)  # either panel's switch
    onnx_predictor = explorer.classify.predictor
    assert onnx_predictor.describe()["backend"] == "onnxruntime"
    assert explorer.retrieval.predictor is onnx_predictor and explorer.classify.chooser.fast.isChecked()
    assert explorer.inference_label.text() == "Inference: ONNX Runtime (CPUExecutionProvider)"
    with qtbot.waitSignal(explorer.classify.finished, timeout=WAIT_MS):
        explorer.classify.classify_paths([image])
    after = explorer.classify.card_widgets()[-1].result
    assert [t.label for t in after.top] == [t.label for t in before.top]
    assert after.top[0].prob == pytest.approx(before.top[0].prob, abs=1e-4)

    explorer.classify.chooser.fast.setChecked(False)  # back to the very same PyTorch model
    assert explorer.classify.predictor is torch_predictor
    assert explorer.inference_label.text() == "Inference: PyTorch (cpu)"


def test_when_a_run_ends_the_log_offers_to_evaluate_it_in_one_click(qtbot, window: MainWindow, tmp_path: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from alexgui.engine.store.rundir import RunDir
    from alexgui.engine.training.loop import train
    from tests.helpers import make_dataset, tiny_config

    data = make_dataset(tmp_path / "data", classes=2, train_per_class=4, val_per_class=3)
    cfg = tiny_config(data, epochs=1, max_steps=2)
    list(train(cfg, RunDir.create(tmp_path / "run", cfg)))
    explorer = window.explorer
    explorer._on_run_started(str(tmp_path / "run"))  # as the training session reports it
    window.session.finished.emit("finished")
    log = window.log
    assert log.offer_bar.isVisible() and log.offer_button.text() == "Evaluate this run"
    with qtbot.waitSignal(explorer.evaluation.evaluated, timeout=WAIT_MS) as blocker:
        QTest.mouseClick(log.offer_button, Qt.MouseButton.LeftButton)
    report = blocker.args[0]
    assert report.n == 6 and report.class_names == ["class_0", "class_1"]  # the run's validation split
    assert explorer.evaluation_window.isVisible()
    qtbot.waitUntil(lambda: not explorer.evaluation.is_busy(), timeout=WAIT_MS)

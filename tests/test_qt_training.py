"""Training from the window with the real engine: start, pause, resume, stop, close, failures."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from alexgui.config import RunConfig
from alexgui.engine.events import Failed, Finished, StepDone
from alexgui.engine.store.metrics_log import read_events
from alexgui.qt.main_window import MainWindow
from alexgui.qt.session import TrainSession
from tests.helpers import make_image

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of 256x256 images: 4 training and 2 validation images each."""
    root = tmp_path_factory.mktemp("images")
    for split, count in (("train", 4), ("val", 2)):
        for c in range(3):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                make_image(c, seed=100 * c + 10 * i + len(split), size=(256, 256)).save(folder / f"{i}.png")
    return root


def tiny(data: Path, epochs: int = 50, max_steps: int = 0) -> RunConfig:
    cfg = RunConfig()
    cfg.data.data = str(data)
    cfg.data.workers = 0
    cfg.data.crop = 64  # the network's adaptive pooling takes small crops: fast steps on one CPU thread
    cfg.train.batch_size = 4
    cfg.train.epochs = epochs
    cfg.train.max_steps = max_steps
    cfg.train.checkpoint_minutes = 0
    return cfg


@pytest.fixture
def window(qtbot, qt_settings):
    w = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(w)
    w.resize(1280, 800)
    yield w
    w.session.shutdown()  # a failed test must not leave the thread behind


def step_points(w: MainWindow, key: str) -> int:
    x, _ = w.plots.curve(key, "loss").getData()
    return 0 if x is None else len(x)


def test_start_pause_resume_stop_with_the_real_engine(qtbot, window: MainWindow, dataset: Path) -> None:
    window.monitor.form.set_config(tiny(dataset))
    with qtbot.waitSignal(window.session.run_started, timeout=10_000):
        window.start_training()
    assert not window.act_start.isEnabled() and window.act_stop.isEnabled()
    assert not window.monitor.form.isEnabled()  # settings belong to the next run while this one trains
    key = window.training.key
    assert key is not None
    qtbot.waitUntil(lambda: step_points(window, key) >= 2, timeout=120_000)

    with qtbot.waitSignal(window.session.state_changed, timeout=60_000, check_params_cb=lambda s: s == "paused"):
        window.toggle_pause()
    assert window.act_pause.text() == "Resume"
    assert window.runs[key].history.state == "paused"
    paused_at = window.runs[key].history.step_count
    qtbot.wait(600)  # several drain intervals: a paused run adds nothing
    assert window.runs[key].history.step_count == paused_at

    window.toggle_pause()
    assert window.act_pause.text() == "Pause"
    qtbot.waitUntil(lambda: window.runs[key].history.step_count > paused_at, timeout=60_000)

    with qtbot.waitSignal(window.session.finished, timeout=60_000) as stopped:
        window.stop_training()
    assert stopped.args == ["stopped"]
    assert window.act_start.isEnabled() and window.monitor.form.isEnabled()
    history = window.runs[key].history
    assert history.state == "stopped"
    assert history.step_count > paused_at
    qtbot.waitUntil(lambda: step_points(window, key) == history.step_count, timeout=5_000)
    # The engine wrote a checkpoint on stop, and the log says so.
    run = window.runs[key].path
    assert run is not None and (run / "checkpoints" / "last.safetensors").is_file()
    assert "Stopped at step" in window.log.text() and "Paused at step" in window.log.text()
    logged, problems = read_events(run / "metrics.jsonl")
    assert problems == [] and logged[-1].type == "stopped"
    assert window.state_label.text() == "Stopped"


def test_closing_during_training_stops_writes_a_checkpoint_and_ends_the_thread(qtbot, window: MainWindow, dataset: Path) -> None:
    window.monitor.form.set_config(tiny(dataset))
    window.show()
    window.start_training()
    key = window.training.key
    qtbot.waitUntil(lambda: window.runs[key].history.step_count >= 1, timeout=120_000)
    asked = []
    window.confirm_stop_on_close = lambda: asked.append(True) or True  # type: ignore[method-assign]
    with qtbot.waitSignal(window.session.finished, timeout=60_000):
        assert window.close() is False  # first the run stops; the window closes after
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert asked == [True]
    assert not window.session.is_running
    assert (window.runs[key].path / "checkpoints" / "last.safetensors").is_file()


def test_cancelling_the_close_keeps_training(qtbot, window: MainWindow, dataset: Path) -> None:
    window.monitor.form.set_config(tiny(dataset))
    window.show()
    window.start_training()
    window.confirm_stop_on_close = lambda: False  # type: ignore[method-assign]
    assert window.close() is False
    assert window.isVisible() and window.session.is_running and window.session.state == "running"
    with qtbot.waitSignal(window.session.finished, timeout=120_000):
        window.stop_training()


def test_an_empty_dataset_shows_a_clear_message_and_the_app_stays_up(qtbot, window: MainWindow, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    window.monitor.form.set_config(tiny(empty))
    with qtbot.waitSignal(window.session.finished, timeout=60_000) as done:
        window.start_training()
    assert done.args == ["failed"]
    assert str(empty) in window.last_error
    history = window.runs[window._current_key].history
    assert history.state == "failed" and str(empty) in history.message
    assert window.monitor.progress.message.isVisibleTo(window.monitor) and str(empty) in window.monitor.progress.message.text()
    assert "Failed" in window.log.text()
    assert window.act_start.isEnabled()  # try again with another folder


def test_an_exception_in_the_engine_is_caught_and_shown(qtbot, qt_settings, tmp_path: Path) -> None:
    def broken_train(cfg, run, control, resume):
        yield StepDone(1, 0, batch=1, batches=3, loss=2.0, top1_err=0.9, top5_err=0.5, lr=0.01, images_per_s=10.0)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    w = MainWindow(qt_settings, train_fn=broken_train, devices=[("cpu", "CPU")])
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.session.finished, timeout=10_000) as done:
        w.start_training()
    assert done.args == ["failed"]
    assert "illegal memory access" in w.last_error
    # The failure is also in the run folder, so watching it later tells the same story.
    logged, _ = read_events(w.runs[w._current_key].path / "metrics.jsonl")
    assert isinstance(logged[-1], Failed) and "illegal memory access" in logged[-1].message
    qtbot.waitUntil(lambda: step_points(w, w._current_key) == 1, timeout=5_000)


def test_events_reach_the_gui_in_batches_not_one_signal_per_step(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QThread

    release = threading.Event()
    thread_names: list[str] = []

    def fast_train(cfg, run, control, resume):
        thread_names.append(QThread.currentThread().objectName())
        for i in range(1, 501):
            yield StepDone(i, 0, batch=i, batches=500, loss=1.0, top1_err=0.5, top5_err=0.2, lr=0.01, images_per_s=1e4)
        release.wait(5)
        yield Finished(500, 0, reason="epochs")

    session = TrainSession(tmp_path / "runs", train_fn=fast_train)
    batches: list[int] = []
    session.events.connect(lambda evs: batches.append(len(evs)))
    with qtbot.waitSignal(session.finished, timeout=10_000) as done:
        run = session.start(RunConfig())
        qtbot.waitUntil(lambda: sum(batches) >= 500, timeout=5_000)
        release.set()
    assert done.args == ["finished"] and not session.is_running
    assert thread_names == [f"alexgui-train-{run.name}"]  # named, for debuggers and the leak check
    assert sum(batches) == 501
    assert len(batches) < 20  # a handful of redraws, not 500
    assert np.all(np.asarray(batches) > 0)


def test_continuing_a_run_that_hit_its_step_limit_trains_past_it(
    qtbot, window: MainWindow, dataset: Path, tmp_path: Path
) -> None:
    """A run from `alexgui train --max-steps 2`, opened and continued in the app, goes on training."""
    from alexgui.engine.store.rundir import RunDir
    from alexgui.engine.training.loop import train

    cfg = tiny(dataset, epochs=3, max_steps=2)
    run = RunDir.create(tmp_path / "server-run", cfg)
    assert isinstance(list(train(cfg, run))[-1], Finished)
    entry = window.open_run(run.path)
    assert entry is not None and entry.history.step_count == 2
    window.resume_selected_run()
    qtbot.waitUntil(lambda: entry.history.step_count >= 4, timeout=120_000)
    with qtbot.waitSignal(window.session.finished, timeout=120_000):
        window.session.stop()
    steps = [e.step for e in read_events(run.metrics_path)[0] if isinstance(e, StepDone)]
    assert steps[:4] == [1, 2, 3, 4]  # one curve, continued

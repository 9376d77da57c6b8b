"""Watching run folders written elsewhere, overlaying runs, and run folders that are broken."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtWidgets import QPushButton

from alexgui.config import RunConfig
from alexgui.engine.events import RunStarted, StepDone, Stopped
from alexgui.engine.store.rundir import RunDir
from alexgui.qt.main_window import MainWindow
from alexgui.qt.runs_table_dialog import RunsTableDialog

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[1]


def step(i: int, loss: float = 2.0, epoch: int = 0) -> StepDone:
    return StepDone(i, epoch, batch=i, batches=10, loss=loss, top1_err=0.8, top5_err=0.4, lr=0.01, images_per_s=50.0)


def make_run(path: Path, steps: int, lrn: bool = True) -> RunDir:
    cfg = RunConfig()
    cfg.model.lrn = lrn
    run = RunDir.create(path, cfg)
    run.append(RunStarted(0, 0, device="cpu", arch="paper", num_classes=3, class_names=["a", "b", "c"],
                          train_images=40, val_images=10, steps_per_epoch=10, epochs=5))
    for i in range(1, steps + 1):
        run.append(step(i, loss=2.0 - 0.05 * i))
    run.close()
    return run


@pytest.fixture
def window(qtbot, qt_settings):
    w = MainWindow(qt_settings, devices=[("cpu", "CPU")], watch_poll_ms=50)
    qtbot.addWidget(w)
    return w


def points(w: MainWindow, key: str, series: str = "loss") -> int:
    x, _ = w.plots.curve(key, series).getData()
    return 0 if x is None else len(x)


def test_a_run_appended_to_by_another_process_updates_the_curves(qtbot, window: MainWindow, tmp_path: Path) -> None:
    run = make_run(tmp_path / "remote-run", steps=5)
    entry = window.open_run(run.path)
    assert entry is not None and entry.source == "watching"
    assert points(window, entry.key) == 5  # the whole history at once
    assert "Epoch 1 of 5" in window.monitor.progress.title.text()

    writer = textwrap.dedent(
        f"""
        from alexgui.engine.store.rundir import RunDir
        from alexgui.engine.events import StepDone, EpochDone
        run = RunDir.open({str(run.path)!r})
        for i in range(6, 11):
            run.append(StepDone(i, 0, batch=i, batches=10, loss=1.0, top1_err=0.5, top5_err=0.2, lr=0.01, images_per_s=60.0))
        run.append(EpochDone(10, 0, train_loss=1.2, train_top1_err=0.6, train_top5_err=0.3, val_loss=1.3,
                             val_top1_err=0.55, val_top5_err=0.25, lr=0.01, seconds=12.0))
        run.close()
        """
    )
    subprocess.run([sys.executable, "-c", writer], check=True, cwd=REPO, timeout=60)
    qtbot.waitUntil(lambda: points(window, entry.key) == 10, timeout=10_000)
    qtbot.waitUntil(lambda: points(window, entry.key, "val_top1") == 1, timeout=10_000)
    _, val = window.plots.curve(entry.key, "val_top1").getData()
    assert val[0] == pytest.approx(55.0)  # plotted in percent
    assert "Epoch 1 done" in window.log.text()
    assert not window.session.is_running  # watching trains nothing here


def test_a_partial_last_line_waits_for_the_rest(qtbot, window: MainWindow, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", steps=2)
    entry = window.open_run(run.path)
    line = (b'{"type": "step", "step": 3, "epoch": 0, "time": 1.0, "batch": 3, "batches": 10, "loss": 1.5, '
            b'"top1_err": 0.7, "top5_err": 0.3, "lr": 0.01, "images_per_s": 40.0}\n')
    with open(run.metrics_path, "ab") as f:
        f.write(line[:40])
    qtbot.wait(200)
    assert points(window, entry.key) == 2
    with open(run.metrics_path, "ab") as f:
        f.write(line[40:])
    qtbot.waitUntil(lambda: points(window, entry.key) == 3, timeout=5_000)


def test_several_runs_overlay_with_their_own_colours_and_checkboxes(qtbot, window: MainWindow, tmp_path: Path) -> None:
    lrn_on = window.open_run(make_run(tmp_path / "lrn-on", steps=8, lrn=True).path)
    lrn_off = window.open_run(make_run(tmp_path / "lrn-off", steps=6, lrn=False).path)
    assert lrn_on is not None and lrn_off is not None
    assert lrn_on.color != lrn_off.color
    assert set(window.plots.run_keys) == {lrn_on.key, lrn_off.key}
    assert window.plots.run_keys[0] == lrn_off.key  # the run just opened is current and drawn on top
    pen = window.plots.curve(lrn_on.key, "loss_smooth").opts["pen"]
    assert pen.color() == lrn_on.color

    window.runs_panel.set_checked(lrn_on.key, False)
    assert window.plots.run_keys == [lrn_off.key]
    window.runs_panel.set_checked(lrn_on.key, True)
    assert set(window.plots.run_keys) == {lrn_on.key, lrn_off.key}

    window.runs_panel.set_current(lrn_on.key)
    assert window.plots.run_keys[0] == lrn_on.key
    window.remove_run(lrn_off.key)
    assert window.plots.run_keys == [lrn_on.key] and window.runs_panel.keys() == [lrn_on.key]
    assert window.open_run(tmp_path / "lrn-on") is lrn_on  # opening it again selects it


def test_a_folder_that_is_not_a_run_gives_a_message_and_nothing_breaks(window: MainWindow, tmp_path: Path) -> None:
    folder = tmp_path / "holiday-photos"
    folder.mkdir()
    assert window.open_run(folder) is None
    assert str(folder) in window.last_error and "config.toml" in window.last_error
    assert window.runs == {}

    broken = tmp_path / "broken-run"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.toml").write_text("[train\nepochs = ", encoding="utf-8")
    assert window.open_run(broken) is None
    assert "config.toml" in window.last_error and "TOML" in window.last_error
    assert window.open_run(tmp_path / "missing") is None
    assert "no such folder" in window.last_error


def test_bad_lines_in_a_run_are_reported_and_the_rest_is_shown(window: MainWindow, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", steps=3)
    with open(run.metrics_path, "ab") as f:
        f.write(b"this is not json\n")
    RunDir.open(run.path).append(step(4))
    RunDir.open(run.path).append(Stopped(4, 0, checkpoint=None))
    entry = window.open_run(run.path)
    assert entry is not None
    assert points(window, entry.key) == 4
    assert "line 5" in window.log.text()
    assert entry.history.state == "stopped"
    assert window.act_resume_run.isEnabled()  # a stopped run can be continued


def test_a_resumed_run_replaces_the_steps_after_its_checkpoint(window: MainWindow, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", steps=6)
    run.append(Stopped(6, 0, checkpoint=None))
    # Resumed from a checkpoint at step 4: steps 5 and 6 are done again.
    run.append(RunStarted(4, 0, device="cpu", arch="paper", num_classes=3, class_names=["a", "b", "c"],
                          train_images=40, val_images=10, steps_per_epoch=10, epochs=5, resumed=True))
    run.append(step(5, loss=0.5))
    run.close()
    entry = window.open_run(run.path)
    x, y = window.plots.curve(entry.key, "loss").getData()
    assert list(x) == [1, 2, 3, 4, 5]
    assert y[-1] == pytest.approx(0.5)


def test_a_replaced_log_is_read_again_from_the_start(qtbot, window: MainWindow, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", steps=6)
    entry = window.open_run(run.path)
    assert points(window, entry.key) == 6
    fresh = tmp_path / "fresh.jsonl"
    with open(fresh, "w", encoding="utf-8") as f:
        f.write(run.metrics_path.read_text(encoding="utf-8").splitlines(keepends=True)[0])  # run_started only
    fresh.replace(run.metrics_path)
    qtbot.waitUntil(lambda: window.runs[entry.key].history.step_count == 0, timeout=5_000)
    assert "read" in window.log.text() and "again" in window.log.text()
    qtbot.waitUntil(lambda: points(window, window.runs[entry.key].key) == 0, timeout=5_000)


def test_reopening_an_open_run_selects_and_shows_it(qtbot, window: MainWindow, tmp_path: Path) -> None:
    first = window.open_run(make_run(tmp_path / "first", steps=3).path)
    second = window.open_run(make_run(tmp_path / "second", steps=3).path)
    assert first is not None and second is not None
    assert window.runs_panel.current_key() == second.key
    window.runs_panel.set_checked(first.key, False)  # hidden from the curves
    window.runs_dock.hide()
    assert window.open_run(tmp_path / "first") is first  # the same entry, not a second copy
    assert len(window.runs) == 2
    assert window.runs_panel.current_key() == first.key and window.current_run() is first
    assert first.visible and not window.runs_dock.isHidden()
    assert "already open" in window.statusBar().currentMessage()


def test_closing_the_window_ends_every_background_job(qtbot, window: MainWindow) -> None:
    """A job a panel left running would be a QThread destroyed while running when the app exits."""
    import threading

    from alexgui.qt.workers import Job, running_jobs

    def endless(stop: threading.Event, progress) -> None:  # type: ignore[no-untyped-def]
        while not stop.wait(0.01):
            pass

    job = Job(endless, parent=window)
    job.start()
    assert job.is_running()
    window.close()
    assert not job.is_running() and job not in running_jobs()


def test_the_runs_table_lists_the_opened_runs_with_their_differing_settings(qtbot, window: MainWindow, tmp_path: Path) -> None:
    window.open_run(make_run(tmp_path / "with-lrn", steps=3).path)
    window.open_run(make_run(tmp_path / "no-lrn", steps=4, lrn=False).path)
    with qtbot.waitSignal(window.runs_panel.table_requested, timeout=2000):
        button = next(b for b in window.runs_panel.findChildren(QPushButton) if b.text() == "Table…")
        button.click()
    dialogs = [d for d in window.findChildren(RunsTableDialog) if d.isVisible()]
    assert len(dialogs) == 1
    table = dialogs[0].table
    headers = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
    assert headers[:2] == ["run", "lrn"]  # only the setting that differs
    assert sorted(table.item(i, 0).text() for i in range(table.rowCount())) == ["no-lrn", "with-lrn"]
    steps = {table.item(i, 0).text(): table.item(i, headers.index("steps")).text() for i in range(2)}
    assert steps == {"with-lrn": "3", "no-lrn": "4"}
    dialogs[0].close()

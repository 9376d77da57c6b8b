"""The Experiments panel on a tiny dataset: run, live overlaid curves, the report, cancel (offscreen Qt)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl

pytest.importorskip("pytestqt")


from alexgui.qt.panels.experiments import ExperimentsPanel
from tests.helpers import make_dataset

WAIT_MS = 120_000


@pytest.fixture(autouse=True)
def _free_checkpoints(tmp_path: Path) -> Iterator[None]:
    """Each paper-network run leaves ~1 GB of checkpoints (61M weights + momentum, last and best): drop them
    after the test instead of letting pytest keep them for three sessions."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


def _panel(qtbot, tmp_path: Path, experiment: str, epochs: int) -> ExperimentsPanel:  # type: ignore[no-untyped-def]
    data = make_dataset(tmp_path / "data", classes=2, train_per_class=2, val_per_class=1)
    panel = ExperimentsPanel(out_root=tmp_path / "experiments", devices=[("cpu", "CPU")])
    qtbot.addWidget(panel)
    panel.resize(700, 900)
    panel.set_experiment(experiment)
    panel.set_dataset(data)
    panel.epochs.setValue(epochs)
    panel.batch_size.setValue(4)
    panel.crop.setValue(64)  # the network pools adaptively: small crops make fast steps on one CPU thread
    return panel


def test_run_overlays_variants_and_shows_the_report(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = _panel(qtbot, tmp_path, "pooling", epochs=2)
    assert "0.4%" in panel.paper.text()  # the paper's claim is shown before anything runs
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS) as blocker:
        panel.run_button.click()
        assert panel.is_busy() and not panel.run_button.isEnabled()
    assert blocker.args == ["report"], panel.error
    points = panel.points()
    assert set(points) == {"overlapping", "non-overlapping"}
    assert all(n == 2 for n in points.values())  # one point per step, both variants overlaid
    assert panel.report is not None and panel.report["experiment"] == "pooling"
    assert "single seed" in panel.result.text()
    assert (tmp_path / "experiments" / "pooling" / "report.md").exists()
    assert panel.open_report_button.isEnabled() and panel.run_button.isEnabled()
    with qtbot.waitSignal(panel.openRunsRequested) as opened:
        panel.open_runs_button.click()
    assert [Path(p).name for p in opened.args[0]] == ["overlapping-seed0", "non-overlapping-seed0"]

    # Later, in a new session: choosing the experiment shows the saved report, its curves and runs.
    again = ExperimentsPanel(out_root=tmp_path / "experiments", devices=[("cpu", "CPU")])
    qtbot.addWidget(again)
    assert again.report is None
    again.set_experiment("pooling")
    assert again.report is not None and again.report["created"] == panel.report["created"]
    assert "single seed" in again.result.text() and "report.md" in again.status.text()
    assert set(again.points()) == {"overlapping", "non-overlapping"} and all(again.points().values())
    assert again.open_report_button.isEnabled() and again.open_runs_button.isEnabled()
    # A damaged report is named, and the panel stays usable.
    (tmp_path / "experiments" / "pooling" / "report.json").write_text("{ not json")
    again.set_experiment("relu-vs-tanh")
    again.set_experiment("pooling")
    assert again.report is None and "report.json" in again.error and again.run_button.isEnabled()


def test_cancel_stops_cleanly_and_keeps_a_checkpoint(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = _panel(qtbot, tmp_path, "towers", epochs=500)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS) as blocker:
        panel.run_button.click()
        qtbot.waitUntil(lambda: "step 1 of 500" in panel.status.text(), timeout=WAIT_MS)
        panel.cancel_button.click()
    assert blocker.args == ["stopped"]
    assert "resume" in panel.status.text()
    assert not panel.is_busy() and panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert (tmp_path / "experiments" / "towers" / "paper-seed0" / "checkpoints" / "last.safetensors").exists()
    assert panel.report is None
    assert any(n >= 1 for n in panel.points().values())  # the towers' colour curves got their first points


def test_a_saved_report_is_read_in_the_app_with_its_plots(qtbot, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The report renders in the Report tab (Markdown and PNGs), whatever desktop launcher there is or not."""
    shipped = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "cpu-demo" / "relu-vs-tanh"
    shutil.copytree(shipped, tmp_path / "experiments" / "relu-vs-tanh")
    panel = ExperimentsPanel(out_root=tmp_path / "experiments", devices=[("cpu", "CPU")])
    qtbot.addWidget(panel)
    panel.resize(1180, 760)
    panel.show()
    panel.set_experiment("relu-vs-tanh")
    assert panel.report is not None and panel.open_report_button.isEnabled()
    panel.open_report_button.click()
    assert panel.tabs.currentWidget() is panel.report_view
    text = panel.report_view.toPlainText()
    assert "ReLU vs tanh" in text and "Steps to the target training error" in text and "**" not in text
    assert panel.report_view.image_names() == ["relu-vs-tanh-curves.png", "relu-vs-tanh-speedup.png"]
    room = panel.report_view.viewport().width()
    assert all(0 < fmt.width() <= room for fmt, _, _ in panel.report_view._images())  # scaled to the view
    # A run folder linked from the report opens in the monitor.
    (tmp_path / "experiments" / "relu-vs-tanh" / "relu-seed0").mkdir(exist_ok=True)
    with qtbot.waitSignal(panel.openRunsRequested) as opened:
        panel.report_view.anchorClicked.emit(QUrl("relu-seed0"))
    assert opened.args[0] == [str((tmp_path / "experiments" / "relu-vs-tanh" / "relu-seed0").resolve())]
    # Open folder without a file manager says so in the panel instead of failing silently.
    monkeypatch.setattr("alexgui.qt.panels.experiments.QDesktopServices.openUrl", lambda url: False)
    assert panel.open_folder() is False
    assert "no file manager" in panel.status.text() and "relu-vs-tanh" in panel.status.text()
    # Another experiment without a report: the view says there is none yet.
    panel.set_experiment("pooling")
    assert panel.report is None and "No report yet" in panel.report_view.toPlainText()
    assert not panel.open_report_button.isEnabled()

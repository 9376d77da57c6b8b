"""The runs table and the curves CSV (issue 14 item 3): the settings that differ, the best and last
validation errors and the step of the best; every logged step and epoch of every run in one CSV, read
back; in the window, Runs > Table… lists the opened runs and exports both files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from alexgui.config import RunConfig
from alexgui.engine.events import EpochDone, StepDone
from alexgui.engine.training.history import RunHistory
from alexgui.engine.training.run_table import CURVE_COLUMNS, RunRow, curves_csv, differing_settings, table, table_csv


def _history(name: str, val_top1: list[float], steps_per_epoch: int = 2) -> RunHistory:
    h = RunHistory(name)
    events = []
    step = 0
    for epoch, err in enumerate(val_top1):
        for b in range(steps_per_epoch):
            step += 1
            events.append(StepDone(step, epoch, batch=b + 1, batches=steps_per_epoch, loss=2.0 - 0.1 * step,
                                   top1_err=0.5, top5_err=0.1, lr=0.01, images_per_s=20.0))
        events.append(EpochDone(step, epoch, train_loss=1.0, train_top1_err=0.4, train_top5_err=0.1, val_loss=1.2,
                                val_top1_err=err, val_top5_err=err / 2, lr=0.01, seconds=3.0))
    h.add(events)
    return h


def _rows() -> list[RunRow]:
    a, b = RunConfig(), RunConfig()
    b.train.lr, b.model.lrn = 0.001, False
    return [RunRow("run-a", a, _history("run-a", [0.6, 0.4, 0.5])), RunRow("run-b", b, _history("run-b", [0.7, 0.65]))]


def test_the_table_shows_what_differs_and_the_best_and_last_errors() -> None:
    rows = _rows()
    assert [s[0] for s in differing_settings(rows)] == ["lrn", "lr"]
    columns, body = table(rows)
    assert columns[:3] == ["run", "lrn", "lr"]
    a = dict(zip(columns, body[0]))
    assert a["best val top-1 %"] == pytest.approx(40.0) and a["best val top-5 %"] == pytest.approx(20.0)
    assert a["step of best"] == 4 and a["last val top-1 %"] == pytest.approx(50.0) and a["steps"] == 6
    b = dict(zip(columns, body[1]))
    assert (b["lr"], b["lrn"], b["step of best"]) == (0.001, False, 4)
    # A run with no epoch yet, or whose settings could not be read, still has its row.
    columns, body = table([*rows, RunRow("new", None, RunHistory("new"))])
    new = dict(zip(columns, body[2]))
    assert new["best val top-1 %"] is None and new["lr"] is None and new["steps"] == 0
    parsed = list(csv.DictReader(io.StringIO(table_csv(rows))))
    assert [r["run"] for r in parsed] == ["run-a", "run-b"] and parsed[0]["best val top-1 %"] == "40"


def test_the_curves_csv_has_every_step_and_epoch_of_every_run() -> None:
    rows = _rows()
    parsed = list(csv.DictReader(io.StringIO(curves_csv(rows))))
    assert tuple(parsed[0]) == CURVE_COLUMNS
    a_steps = [r for r in parsed if r["run"] == "run-a" and r["type"] == "step"]
    a_epochs = [r for r in parsed if r["run"] == "run-a" and r["type"] == "epoch"]
    assert [int(r["step"]) for r in a_steps] == [1, 2, 3, 4, 5, 6]
    assert [(int(r["step"]), int(r["epoch"]), float(r["val_top1_err_pct"])) for r in a_epochs] == [
        (2, 1, 60.0), (4, 2, 40.0), (6, 3, 50.0)]
    assert float(a_steps[0]["loss"]) == pytest.approx(1.9) and a_steps[0]["val_loss"] == ""
    assert len([r for r in parsed if r["run"] == "run-b"]) == 4 + 2


def test_the_windows_runs_table_and_its_export(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    from alexgui.qt.runs_table_dialog import RunsTableDialog, table_path_for

    dialog = RunsTableDialog(_rows())
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 2 and dialog.table.horizontalHeaderItem(2).text() == "lr"
    best = [dialog.table.horizontalHeaderItem(j).text() for j in range(dialog.table.columnCount())].index("best val top-1 %")
    dialog.table.sortItems(best, Qt.SortOrder.DescendingOrder)
    assert dialog.table.item(0, 0).text() == "run-b"  # 65% is the higher best error
    dialog.export(tmp_path / "runs.csv")
    assert (tmp_path / "runs.csv").read_text().startswith("run,type,step")
    assert table_path_for(tmp_path / "runs.csv") == tmp_path / "runs-table.csv" and (tmp_path / "runs-table.csv").exists()
    assert "Saved the curves" in dialog.status.text()

"""Several runs at a glance (issue 14 item 3): one row per run with the settings that differ between them and
its best and last validation errors, and every run's curves in one CSV (one row per logged step or epoch,
with the run's name), for a spreadsheet or pandas."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alexgui.config import RunConfig
from alexgui.engine.training.history import RunHistory

# (column, section, field): the settings a comparison of runs is usually about.
SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("arch", "model", "arch"),
    ("activation", "model", "activation"),
    ("lrn", "model", "lrn"),
    ("pooling", "model", "pooling"),
    ("dropout", "model", "dropout"),
    ("lr", "train", "lr"),
    ("batch", "train", "batch_size"),
    ("epochs", "train", "epochs"),
    ("seed", "train", "seed"),
    ("device", "train", "device"),
    ("conv1 init std", "train", "conv1_init_std"),
    ("conv1 lr x", "train", "conv1_lr_scale"),
    ("data", "data", "data"),
)
# Errors in percent, as the app's curves show them.
RESULTS = ("best val top-1 %", "best val top-5 %", "step of best", "last val top-1 %", "last val top-5 %", "steps")


@dataclass
class RunRow:
    name: str
    config: RunConfig | None  # None: a run whose settings could not be read
    history: RunHistory


def _setting(cfg: RunConfig | None, section: str, name: str) -> Any:
    return None if cfg is None else getattr(getattr(cfg, section), name)


def differing_settings(rows: Sequence[RunRow]) -> list[tuple[str, str, str]]:
    """The SETTINGS whose value is not the same for every run (all of them for a single run)."""
    if len(rows) < 2:
        return list(SETTINGS)
    return [s for s in SETTINGS if len({repr(_setting(r.config, s[1], s[2])) for r in rows}) > 1]


def results(history: RunHistory) -> dict[str, float | int | None]:
    """Best (lowest validation top-1, its top-5 and step) and last validation errors, and the steps trained."""
    top1, top5, steps = (history.epoch_column(c) for c in ("val_top1", "val_top5", "step"))
    out: dict[str, float | int | None] = dict.fromkeys(RESULTS)
    out["steps"] = history.last_step.step if history.last_step is not None else 0
    finite = np.isfinite(top1)
    if finite.any():
        best = int(np.nanargmin(np.where(finite, top1, np.nan)))
        out["best val top-1 %"], out["best val top-5 %"] = float(top1[best]), float(top5[best])
        out["step of best"] = int(steps[best])
        out["last val top-1 %"], out["last val top-5 %"] = float(top1[-1]), float(top5[-1])
    return out


def table(rows: Sequence[RunRow]) -> tuple[list[str], list[list[Any]]]:
    """(column names, one row of values per run): the run, its differing settings, its results."""
    settings = differing_settings(rows)
    columns = ["run", *(s[0] for s in settings), *RESULTS]
    body = []
    for r in rows:
        found = results(r.history)
        body.append([r.name, *(_setting(r.config, s[1], s[2]) for s in settings), *(found[k] for k in RESULTS)])
    return columns, body


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def table_csv(rows: Sequence[RunRow]) -> str:
    columns, body = table(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(v) for v in row] for row in body)
    return buf.getvalue()


STEP_FIELDS = ("loss", "top1", "top5", "lr", "ips")
EPOCH_FIELDS = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")
# The CSV's names say the units: errors in percent, speed in images per second.
CURVE_COLUMNS = ("run", "type", "step", "epoch", "loss", "top1_err_pct", "top5_err_pct", "lr", "images_per_s",
                 "train_loss", "train_top1_err_pct", "train_top5_err_pct", "val_loss", "val_top1_err_pct", "val_top5_err_pct")


def curves_csv(rows: Sequence[RunRow]) -> str:
    """Every run's curves: a row per logged step ("type" step) and per epoch's end ("type" epoch)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CURVE_COLUMNS)
    for r in rows:
        h = r.history
        steps = {c: h.column(c) for c in ("step", *STEP_FIELDS)}
        for i in range(len(steps["step"])):
            writer.writerow([r.name, "step", int(steps["step"][i]), "",
                             *(_cell(float(steps[c][i])) for c in STEP_FIELDS), *([""] * len(EPOCH_FIELDS))])
        epochs = {c: h.epoch_column(c) for c in ("step", "epoch", *EPOCH_FIELDS)}
        for i in range(len(epochs["step"])):
            writer.writerow([r.name, "epoch", int(epochs["step"][i]), int(epochs["epoch"][i]) + 1,
                             *([""] * len(STEP_FIELDS)), *(_cell(float(epochs[c][i])) for c in EPOCH_FIELDS)])
    return buf.getvalue()

"""One experiment run as its log tells it: status, the training-error curve and each epoch's validation errors.

Its own module so the report's sections (analysis.py, tower_analysis.py) share it without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexgui.engine.events import EpochDone, Failed, Finished, RunStarted, StepDone, Stopped
from alexgui.engine.experiments.plan import PlannedRun
from alexgui.engine.store.metrics_log import read_events


@dataclass
class RunRecord:
    variant: str
    label: str
    seed: int
    path: Path
    status: str = "not started"  # finished, stopped, failed, not started, unfinished
    message: str = ""
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    train_top1: np.ndarray = field(default_factory=lambda: np.zeros(0))
    epochs: list[dict[str, Any]] = field(default_factory=list)
    started: RunStarted | None = None

    @property
    def last_step(self) -> int:
        return int(self.steps[-1]) if len(self.steps) else 0

    def last_val(self) -> dict[str, Any] | None:
        with_val = [e for e in self.epochs if e["val_top1"] is not None and math.isfinite(e["val_top1"])]
        return with_val[-1] if with_val else None


def read_run(run: PlannedRun) -> RunRecord:
    record = RunRecord(run.variant.name, run.variant.label, run.seed, run.path)
    events, _problems = read_events(run.path)
    if not events:
        return record
    record.status = "unfinished"
    steps: dict[int, float] = {}  # a resumed run repeats steps after its checkpoint: keep the latest
    for e in events:
        if isinstance(e, RunStarted):
            record.started = e
            steps = {s: v for s, v in steps.items() if s <= e.step}
            record.epochs = [x for x in record.epochs if x["step"] <= e.step]
            record.status, record.message = "unfinished", ""
        elif isinstance(e, StepDone):
            steps[e.step] = e.top1_err
        elif isinstance(e, EpochDone):
            record.epochs.append({
                "epoch": e.epoch, "step": e.step, "val_top1": e.val_top1_err, "val_top5": e.val_top5_err,
                "train_top1": e.train_top1_err,
            })  # fmt: skip
        elif isinstance(e, Finished):
            record.status, record.message = "finished", e.reason
        elif isinstance(e, Stopped):
            record.status, record.message = "stopped", f"stopped at step {e.step}"
        elif isinstance(e, Failed):
            record.status, record.message = "failed", e.message
    order = sorted(steps)
    record.steps = np.array(order, np.int64)
    record.train_top1 = np.array([steps[s] for s in order], np.float64)
    return record

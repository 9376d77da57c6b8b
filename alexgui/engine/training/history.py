"""The history of one training run: its metrics as growing columns, its state, its pace and ETA.

Plain Python, no Qt: the window's monitor and plots read it, and so can the command line's progress
bar. It is rebuilt from a run's events, the same events whether they come from a training thread or
from a run directory's metrics.jsonl, so a run trained here and one watched on a shared disk look
the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from alexgui.engine.events import (
    CheckpointSaved,
    DataChanged,
    EpochDone,
    Event,
    Failed,
    Finished,
    KernelSnapshot,
    LrDropped,
    Paused,
    PreflightReport,
    Progress,
    Resumed,
    RunStarted,
    StepDone,
    Stopped,
)


class _Column:
    """A float64 array that grows by doubling, so plots get a view without copying lists."""

    def __init__(self) -> None:
        self._data = np.empty(256, dtype=np.float64)
        self._n = 0

    def append(self, value: float | None) -> None:
        if self._n == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self._n] = math.nan if value is None else value
        self._n += 1

    def truncate(self, n: int) -> None:
        self._n = min(self._n, n)

    @property
    def values(self) -> np.ndarray:
        return self._data[: self._n]

    def __len__(self) -> int:
        return self._n


class _Ema:
    """Exponential moving average with the start-up bias removed (as TensorBoard's smoothing)."""

    def __init__(self, smoothing: float) -> None:
        self.smoothing = smoothing
        self._value = 0.0
        self._weight = 0.0

    def update(self, x: float) -> float:
        if not math.isfinite(x):
            return self.value
        self._value = self.smoothing * self._value + (1 - self.smoothing) * x
        self._weight = self.smoothing * self._weight + (1 - self.smoothing)
        return self.value

    @property
    def value(self) -> float:
        return self._value / self._weight if self._weight else math.nan


STEP_COLUMNS = ("step", "time", "loss", "loss_smooth", "top1", "top5", "top1_smooth", "top5_smooth", "lr", "ips", "ips_smooth")
EPOCH_COLUMNS = ("step", "epoch", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")
# conv1 at each kernel snapshot: time, structure over all kernels, then per tower (NaN where a line lacks it)
KERNEL_COLUMNS = ("step", "time", "structure", "structure_0", "structure_1", "colour_0", "colour_1")


class RunHistory:
    """Everything the monitor shows about one run. Plain Python: no Qt, easy to test.

    `version` changes whenever something was added, `data_version` only when the curves changed, so
    the plots redraw only when there is something new to draw.
    """

    def __init__(self, name: str, smoothing: float = 0.9) -> None:
        self.name = name
        self.smoothing = smoothing
        self.version = 0
        self.data_version = 0
        self.steps = {c: _Column() for c in STEP_COLUMNS}
        self.epochs = {c: _Column() for c in EPOCH_COLUMNS}
        self.kernels = {c: _Column() for c in KERNEL_COLUMNS}
        self.started: RunStarted | None = None
        self.state = "new"  # new, preparing, running, paused, finished, stopped, failed
        self.message = ""  # the failure message, or why the run ended
        self.progress: Progress | None = None
        self.last_step: StepDone | None = None
        self.last_epoch: EpochDone | None = None
        self.last_event_time: float | None = None
        self.lr_drops: list[LrDropped] = []
        self.checkpoints: list[CheckpointSaved] = []
        self.skipped: list[dict[str, str]] = []
        self.data_changed: list[dict[str, str]] = []  # files that vanished or changed while training
        self.max_steps = 0  # known for runs trained here; 0 = unknown or unlimited
        self._reset_smoothing()
        self._step_seconds = _Ema(0.8)
        self._epoch_overhead = 0.0  # validation and checkpoint time at an epoch's end
        self._previous_step_time: float | None = None

    def _reset_smoothing(self) -> None:
        self._ema = {k: _Ema(self.smoothing) for k in ("loss", "top1", "top5", "ips")}

    # -- feeding ----------------------------------------------------------------------------

    def add(self, events: Iterable[Event]) -> None:
        curves_changed = False
        for ev in events:
            self._add(ev)
            self.last_event_time = ev.time
            curves_changed = curves_changed or isinstance(ev, (StepDone, EpochDone, KernelSnapshot)) or (
                isinstance(ev, RunStarted) and ev.resumed
            )
        self.version += 1
        if curves_changed:
            self.data_version += 1

    def _add(self, ev: Event) -> None:
        if isinstance(ev, StepDone):
            self._add_step(ev)
        elif isinstance(ev, EpochDone):
            self._add_epoch(ev)
        elif isinstance(ev, KernelSnapshot):
            self._add_kernels(ev)
        elif isinstance(ev, RunStarted):
            if ev.resumed:
                self._forget_after(ev.step)
            self.started = ev
            self.state = "running"
            self._previous_step_time = ev.time
        elif isinstance(ev, Progress):
            self.progress = ev
            if self.state in ("new", "stopped", "failed", "finished"):
                self.state = "preparing"
        elif isinstance(ev, PreflightReport):
            self.skipped = list(ev.skipped)
        elif isinstance(ev, DataChanged):
            self.data_changed.extend(ev.files)
        elif isinstance(ev, LrDropped):
            self.lr_drops.append(ev)
        elif isinstance(ev, CheckpointSaved):
            self.checkpoints.append(ev)
            self._previous_step_time = None  # saving is not a training step
        elif isinstance(ev, Paused):
            self.state = "paused"
            self._previous_step_time = None
        elif isinstance(ev, Resumed):
            self.state = "running"
            self._previous_step_time = ev.time
        elif isinstance(ev, Finished):
            self.state, self.message = "finished", f"finished ({ev.reason.replace('_', ' ')})"
        elif isinstance(ev, Stopped):
            self.state, self.message = "stopped", "stopped by the user"
        elif isinstance(ev, Failed):
            self.state, self.message = "failed", ev.message

    def _add_step(self, ev: StepDone) -> None:
        s = self.steps
        s["step"].append(ev.step)
        s["time"].append(ev.time)
        s["loss"].append(ev.loss)
        s["loss_smooth"].append(self._ema["loss"].update(ev.loss))
        s["top1"].append(100 * ev.top1_err)
        s["top5"].append(100 * ev.top5_err)
        s["top1_smooth"].append(100 * self._ema["top1"].update(ev.top1_err))
        s["top5_smooth"].append(100 * self._ema["top5"].update(ev.top5_err))
        s["lr"].append(ev.lr)
        s["ips"].append(ev.images_per_s)
        s["ips_smooth"].append(self._ema["ips"].update(ev.images_per_s))
        if self._previous_step_time is not None and ev.time > self._previous_step_time:
            self._step_seconds.update(ev.time - self._previous_step_time)
        self._previous_step_time = ev.time
        self.last_step = ev
        if self.state not in ("paused",):
            self.state = "running"

    def _add_epoch(self, ev: EpochDone) -> None:
        e = self.epochs
        e["step"].append(ev.step)
        e["epoch"].append(ev.epoch)
        e["train_loss"].append(ev.train_loss)
        e["train_top1"].append(100 * ev.train_top1_err)
        e["train_top5"].append(100 * ev.train_top5_err)
        e["val_loss"].append(ev.val_loss)
        e["val_top1"].append(None if ev.val_top1_err is None else 100 * ev.val_top1_err)
        e["val_top5"].append(None if ev.val_top5_err is None else 100 * ev.val_top5_err)
        if self.last_step is not None and ev.time > self.last_step.time:
            self._epoch_overhead = ev.time - self.last_step.time
        self.last_epoch = ev
        self._previous_step_time = None

    def _add_kernels(self, ev: KernelSnapshot) -> None:
        k = self.kernels
        k["step"].append(ev.step)
        k["time"].append(ev.time)
        k["structure"].append(ev.structure_all)
        for tower in (0, 1):  # a one-tower network fills tower 0 only
            structure = ev.structure[tower] if ev.structure is not None and tower < len(ev.structure) else None
            colour = ev.colour_specificity[tower] if tower < len(ev.colour_specificity) else None
            k[f"structure_{tower}"].append(structure)
            k[f"colour_{tower}"].append(colour)

    def _forget_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: keep only what led up to it."""
        keep = int(np.searchsorted(self.steps["step"].values, step, side="right"))
        for c in self.steps.values():
            c.truncate(keep)
        keep_epochs = int(np.searchsorted(self.epochs["step"].values, step, side="right"))
        for c in self.epochs.values():
            c.truncate(keep_epochs)
        # side="left": the resumed run measures the checkpoint's kernels again at `step`
        keep_kernels = int(np.searchsorted(self.kernels["step"].values, step, side="left"))
        for c in self.kernels.values():
            c.truncate(keep_kernels)
        self.lr_drops = [d for d in self.lr_drops if d.step <= step]
        self._reset_smoothing()
        for name, key in (("loss", "loss"), ("top1", "top1"), ("top5", "top5"), ("ips", "ips")):
            scale = 100.0 if key in ("top1", "top5") else 1.0
            smooth = np.array([self._ema[name].update(v / scale) * scale for v in self.steps[key].values])
            column = self.steps[f"{key}_smooth"]
            column.truncate(0)
            for v in smooth:
                column.append(float(v))

    # -- reading ----------------------------------------------------------------------------

    @property
    def step_count(self) -> int:
        return len(self.steps["step"])

    def column(self, name: str) -> np.ndarray:
        return self.steps[name].values

    def step_times(self) -> list[float]:
        """Wall-clock time (time.time()) of each step."""
        return [float(t) for t in self.steps["time"].values]

    def epoch_column(self, name: str) -> np.ndarray:
        return self.epochs[name].values

    def kernel_column(self, name: str) -> np.ndarray:
        """A KERNEL_COLUMNS series: conv1's scores at each kernel snapshot (the structure curve)."""
        return self.kernels[name].values

    @property
    def seconds_per_step(self) -> float | None:
        value = self._step_seconds.value
        return value if math.isfinite(value) else None

    def eta(self) -> tuple[float | None, float | None]:
        """Seconds left in this epoch and in the whole run, when the run is going and the pace is known."""
        per_step = self.seconds_per_step
        if self.state != "running" or per_step is None or self.started is None or self.last_step is None:
            return None, None
        last = self.last_step
        batches = max(last.batches, 1)
        # A StepDone with batch == batches is the epoch's last step; the epoch then turns over.
        left_in_epoch = (batches - last.batch) * per_step
        epochs_after = max(self.started.epochs - last.epoch - 1, 0)
        steps_left = (batches - last.batch) + epochs_after * batches
        overhead = self._epoch_overhead * (epochs_after + 1)
        if self.max_steps:
            capped = max(self.max_steps - last.step, 0)
            if capped < steps_left:
                return min(left_in_epoch, capped * per_step), capped * per_step
        return left_in_epoch + self._epoch_overhead, steps_left * per_step + overhead

"""Training and watching runs from the desktop app.

`RunHistory` is a plain model of one run's metrics, rebuilt from its events (the same events whether
they come from a training thread or from a run directory's metrics.jsonl). `TrainSession` lives in
the GUI thread and owns a QThread on which a `TrainWorker` drives the engine's event generator; the
worker only appends events to a queue, and the session hands them to the GUI in one batch a second
(DRAIN_MS), so that drawing takes little from training. `RunWatcher` follows a run directory written by another
process (`alexgui train`, maybe on another machine and a shared disk).
"""

from __future__ import annotations

import collections
import math
import re
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from alexgui.config import RunConfig
from alexgui.engine.events import (
    CheckpointSaved,
    EpochDone,
    Event,
    Failed,
    Finished,
    LrDropped,
    Paused,
    PreflightReport,
    Progress,
    Resumed,
    RunStarted,
    StepDone,
    Stopped,
)

TERMINAL = (Finished, Stopped, Failed)
# How often the GUI takes the worker's events (and so redraws the curves): once a second still reads
# as live, and on a small CPU every repaint takes time from torch's threads (at 2 Hz, with the axes
# repainted at every point, the GUI thread took about 5% of a core; benchmarks/README.md).
DRAIN_MS = 1000
WATCH_POLL_MS = 1000


# -- the model of a run -----------------------------------------------------------------------


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
            curves_changed = curves_changed or isinstance(ev, (StepDone, EpochDone)) or (
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

    def _forget_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: keep only what led up to it."""
        keep = int(np.searchsorted(self.steps["step"].values, step, side="right"))
        for c in self.steps.values():
            c.truncate(keep)
        keep_epochs = int(np.searchsorted(self.epochs["step"].values, step, side="right"))
        for c in self.epochs.values():
            c.truncate(keep_epochs)
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


# -- training in a worker thread --------------------------------------------------------------

TrainFn = Callable[..., Iterator[Event]]


def _default_train_fn() -> TrainFn:
    from alexgui.engine.training.loop import train

    return train


def _default_control() -> Any:
    from alexgui.engine.training.loop import TrainControl

    return TrainControl()


def describe_exception(e: BaseException) -> str:
    """A message for the user; out-of-memory gets advice instead of a stack trace."""
    name = type(e).__name__
    if "OutOfMemory" in name or isinstance(e, MemoryError):
        return f"out of memory ({e}). Try a smaller batch size or another device."
    return f"training stopped by an unexpected error: {name}: {e}"


class TrainWorker(QObject):
    """Runs the engine's generator on its QThread and queues every event for the GUI thread."""

    finished = Signal()

    def __init__(self, train_fn: TrainFn, cfg: RunConfig, run: Any, control: Any, resume: bool, sink: collections.deque) -> None:
        super().__init__()
        self._train_fn = train_fn
        self._cfg = cfg
        self._run = run
        self._control = control
        self._resume = resume
        self._sink = sink

    @Slot()
    def run(self) -> None:
        step = epoch = 0
        ended = False
        try:
            for ev in self._train_fn(self._cfg, self._run, self._control, self._resume):
                # deque.append is atomic: no lock, and the GUI thread takes events at its own pace.
                self._sink.append(ev)
                step, epoch = ev.step, ev.epoch
                ended = ended or isinstance(ev, TERMINAL)
            if not ended:
                self._sink.append(Failed(step, epoch, message="the training loop ended without saying why"))
        except Exception as e:  # noqa: BLE001 - the window must show it and stay up
            failed = Failed(step, epoch, message=describe_exception(e))
            self._sink.append(failed)
            traceback.print_exc()
            try:
                self._run.append(failed)  # so a later look at the run directory tells the same story
            except Exception:  # noqa: BLE001 - the run directory may be the thing that failed
                pass
        finally:
            self.finished.emit()


def run_dir_name(cfg: RunConfig, now: float | None = None) -> str:
    """<timestamp>-<dataset>, e.g. 20250101-120000-demo; safe on every file system."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    data = cfg.data.data
    name = "demo" if data == "demo" else Path(data).name or "data"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"
    return f"{stamp}-{name}"


class TrainSession(QObject):
    """One training run at a time, on a worker thread; lives in the GUI thread and relays its events.

    Signals (all emitted in the GUI thread):
      run_started(str path)    the run directory exists and the worker was started
      events(list)             a batch of engine events, at most every DRAIN_MS
      state_changed(str)       idle, running, pausing, paused, stopping
      finished(str)            the worker thread has ended: finished, stopped or failed
      kernels(object)          {layer: kernels} snapshots from the trainer, for live filter views
    """

    run_started = Signal(str)
    events = Signal(list)
    state_changed = Signal(str)
    finished = Signal(str)
    kernels = Signal(object)

    def __init__(
        self,
        runs_root: Path,
        train_fn: TrainFn | None = None,
        control_factory: Callable[[], Any] | None = None,
        drain_ms: int = DRAIN_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.runs_root = Path(runs_root)
        self._train_fn = train_fn
        self._control_factory = control_factory or _default_control
        self._queue: collections.deque[Event] = collections.deque()
        self._thread: QThread | None = None
        self._worker: TrainWorker | None = None
        self.control: Any = None
        self.run_path: Path | None = None
        self._state = "idle"
        self._last_terminal: Event | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(drain_ms)
        self._timer.timeout.connect(self._drain)

    @property
    def state(self) -> str:
        return self._state

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    def start(self, cfg: RunConfig, run_path: Path | None = None, resume: bool = False) -> Path:
        """Create (or, with resume, reopen) the run directory and start training in the background."""
        if self._thread is not None:
            raise RuntimeError("a training run is already going; stop it first")
        from alexgui.engine.store.rundir import RunDir

        if resume:
            if run_path is None:
                raise ValueError("resume needs the run directory to continue")
            run = RunDir.open(run_path)
        else:
            path = run_path or self.runs_root / run_dir_name(cfg)
            suffix = 1
            while run_path is None and path.exists():  # two starts within one second
                suffix += 1
                path = self.runs_root / f"{run_dir_name(cfg)}-{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            run = RunDir.create(path, cfg)
        self.run_path = Path(run.path)
        self.control = self._control_factory()
        if hasattr(self.control, "on_kernels"):
            self.control.on_kernels = self.kernels.emit  # thread-safe: Qt queues it to the GUI thread
        self._queue.clear()
        self._last_terminal = None
        train_fn = self._train_fn or _default_train_fn()

        thread = QThread()
        thread.setObjectName(f"alexgui-train-{self.run_path.name}")
        worker = TrainWorker(train_fn, cfg, run, self.control, resume, self._queue)
        worker.moveToThread(thread)
        # Connect everything first, then start.
        thread.started.connect(worker.run)
        # Direct: QThread.quit is thread-safe, and queued to the GUI thread it could not arrive while
        # shutdown() blocks that thread in wait().
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        worker.finished.connect(self._on_worker_finished)
        self._thread, self._worker = thread, worker
        self._set_state("running")
        self.run_started.emit(str(self.run_path))
        thread.start()
        self._timer.start()
        return self.run_path

    def pause(self) -> None:
        if self.control is not None and self._thread is not None:
            self.control.pause.set()
            self._set_state("pausing")

    def resume(self) -> None:
        if self.control is not None and self._thread is not None:
            self.control.pause.clear()
            self._set_state("running")

    @property
    def is_paused(self) -> bool:
        return self.control is not None and self._thread is not None and self.control.pause.is_set()

    def stop(self) -> None:
        """Ask the trainer to stop after the current step; it writes a checkpoint first."""
        if self.control is not None and self._thread is not None:
            self.control.stop.set()
            self._set_state("stopping")

    def save_now(self) -> None:
        if self.control is not None and self._thread is not None:
            self.control.save_now.set()

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Stop and wait for the thread (application exit); True when no thread is left running."""
        thread = self._thread
        if thread is None:
            return True
        self.stop()
        done = thread.wait(timeout_ms)
        if done:
            self._on_worker_finished()
        return done

    def take_events(self) -> list[Event]:
        out: list[Event] = []
        while True:
            try:
                out.append(self._queue.popleft())
            except IndexError:
                return out

    @Slot()
    def _drain(self) -> None:
        batch = self.take_events()
        if not batch:
            return
        for ev in batch:
            if isinstance(ev, Paused):
                self._set_state("paused")
            elif isinstance(ev, Resumed) and self._state != "stopping":
                self._set_state("running")
            elif isinstance(ev, TERMINAL):
                self._last_terminal = ev
        self.events.emit(batch)

    @Slot()
    def _on_worker_finished(self) -> None:
        thread = self._thread
        if thread is None:
            return  # already handled (shutdown() waits, then the queued signal arrives)
        thread.quit()
        thread.wait()
        self._timer.stop()
        self._drain()
        assert self._worker is not None
        self._worker.deleteLater()
        thread.deleteLater()
        self._thread = self._worker = None
        terminal = self._last_terminal
        final = {Finished: "finished", Stopped: "stopped"}.get(type(terminal), "failed")
        self._set_state("idle")
        self.finished.emit(final)


# -- watching a run directory -----------------------------------------------------------------


class RunOpenError(Exception):
    """A run directory that cannot be shown; the message names the folder and the problem."""


class RunWatcher(QObject):
    """Reads a run directory's history, then follows new lines of its metrics.jsonl with a timer."""

    events = Signal(list)
    problems = Signal(list)
    restarted = Signal()  # metrics.jsonl was replaced or truncated: the events that follow are the whole story

    def __init__(self, path: str | Path, poll_ms: int = WATCH_POLL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self._follower: Any = None
        self._restarts = 0
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)

    def open(self) -> tuple[list[Event], list[str]]:
        """The run's history so far and any problems in it; raises RunOpenError for an unusable folder."""
        from alexgui.engine.store.rundir import MetricsFollower, RunDir

        try:
            run = RunDir.open(self.path)
        except Exception as e:  # noqa: BLE001 - whatever is wrong, say it and keep the app up
            raise RunOpenError(str(e) if str(self.path) in str(e) else f"{self.path}: {e}") from None
        metrics = Path(run.metrics_path)
        try:
            self._follower = MetricsFollower(metrics)
            history, problems = self._poll_follower()
        except OSError as e:
            raise RunOpenError(f"{metrics}: cannot read ({e})") from None
        return history, problems

    def _poll_follower(self) -> tuple[list[Event], list[str]]:
        result = self._follower.poll()
        follower_problems = getattr(self._follower, "problems", None)
        if isinstance(result, tuple):  # tolerate a follower that returns (events, problems)
            return list(result[0]), list(result[1])
        problems: list[str] = []
        if isinstance(follower_problems, list) and follower_problems:
            problems = list(follower_problems)
            follower_problems.clear()
        return list(result), problems

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @Slot()
    def poll(self) -> None:
        if self._follower is None:
            return
        try:
            new, problems = self._poll_follower()
        except OSError as e:
            self.problems.emit([f"{self.path}: cannot read metrics ({e})"])
            return
        restarts = getattr(self._follower, "restarts", 0)
        if restarts != self._restarts:
            self._restarts = restarts
            self.restarted.emit()
        if problems:
            self.problems.emit(problems)
        if new:
            self.events.emit(new)

"""Training and watching runs from the desktop app.

`TrainSession` lives in the GUI thread and runs the engine's event generator as a workers.Job (the
app's one worker family) on a thread of its own; the job queues the events, and the session hands
them to the GUI in one batch a second (DRAIN_MS), so that drawing takes little from training.
`RunWatcher` follows a run directory written by another process (`alexgui train`, maybe on another
machine and a shared disk). Both feed a `RunHistory` (alexgui.engine.training.history, Qt-free).
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from alexgui.config import RunConfig
from alexgui.engine.events import Event, Failed, Finished, Paused, Resumed, Stopped
from alexgui.errors import AlexguiError
from alexgui.qt.workers import Job

if TYPE_CHECKING:  # for the hints only: as before, the session imports them where it uses them
    from alexgui.engine.store.metrics_log import MetricsFollower
    from alexgui.engine.store.rundir import RunDir
    from alexgui.engine.training.control import TrainControl

TERMINAL = (Finished, Stopped, Failed)
# How often the GUI takes the worker's events (and so redraws the curves): once a second still reads
# as live, and on a small CPU every repaint takes time from torch's threads (at 2 Hz, with the axes
# repainted at every point, the GUI thread took about 5% of a core; benchmarks/README.md).
DRAIN_MS = 1000
WATCH_POLL_MS = 1000

# -- training in a worker thread --------------------------------------------------------------

TrainFn = Callable[..., Iterator[Event]]


def _default_train_fn() -> TrainFn:
    from alexgui.engine.training.loop import train

    return train


def describe_exception(e: BaseException) -> str:
    """A message for the user; out-of-memory gets advice instead of a stack trace."""
    name = type(e).__name__
    if "OutOfMemory" in name or isinstance(e, MemoryError):
        return f"out of memory ({e}). Try a smaller batch size or another device."
    return f"training stopped by an unexpected error: {name}: {e}"


def _training(
    train_fn: TrainFn,
    cfg: RunConfig,
    run: RunDir,
    control: TrainControl,
    resume: bool,
    *,
    stop: threading.Event,
    progress: Callable[..., None],
) -> Iterator[Event]:
    """The job the session runs: the engine's events, always ending with a terminal one.

    The job's own `stop` is never set: the session stops the run through `control`, so that the
    engine writes its checkpoint first. An exception becomes a Failed event, in the queue and in the
    run directory, so the window stays up and a later look at the run tells the same story.
    """
    step = epoch = 0
    ended = False
    try:
        for ev in train_fn(cfg, run, control, resume):
            yield ev
            step, epoch = ev.step, ev.epoch
            ended = ended or isinstance(ev, TERMINAL)
        if not ended:
            yield Failed(step, epoch, message="the training loop ended without saying why")
    except Exception as e:  # noqa: BLE001 - the window must show it and stay up
        failed = Failed(step, epoch, message=describe_exception(e))
        traceback.print_exc()
        try:
            run.append(failed)
        except Exception:  # noqa: BLE001 - the run directory may be the thing that failed
            pass
        yield failed


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
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.runs_root = Path(runs_root)
        self._train_fn = train_fn
        self._job: Job | None = None
        self.control: TrainControl | None = None  # the current (or last) run's
        self.run_path: Path | None = None
        self._state = "idle"
        self._last_terminal: Event | None = None

    @property
    def state(self) -> str:
        return self._state

    @property
    def is_running(self) -> bool:
        return self._job is not None

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    def start(self, cfg: RunConfig, run_path: Path | None = None, resume: bool = False) -> Path:
        """Create (or, with resume, reopen) the run directory and start training in the background."""
        if self._job is not None:
            raise RuntimeError("a training run is already going; stop it first")
        from alexgui.engine.store.rundir import RunDir
        from alexgui.engine.training.control import TrainControl

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
        self.control = TrainControl()
        self.control.on_kernels = self.kernels.emit  # thread-safe: Qt queues it to the GUI thread
        self._last_terminal = None
        train_fn = self._train_fn or _default_train_fn()

        job = Job(_training, train_fn, cfg, run, self.control, resume, parent=self,
                  thread_name=f"alexgui-train-{self.run_path.name}", batch_ms=DRAIN_MS)
        # Connect everything first, then start.
        job.batch.connect(self._on_batch)
        job.done.connect(self._on_job_done)
        self._job = job
        self._set_state("running")
        self.run_started.emit(str(self.run_path))
        job.start()
        return self.run_path

    def pause(self) -> None:
        if self.control is not None and self._job is not None:
            self.control.pause.set()
            self._set_state("pausing")

    def resume(self) -> None:
        if self.control is not None and self._job is not None:
            self.control.pause.clear()
            self._set_state("running")

    @property
    def is_paused(self) -> bool:
        return self.control is not None and self._job is not None and self.control.pause.is_set()

    def stop(self) -> None:
        """Ask the trainer to stop after the current step; it writes a checkpoint first."""
        if self.control is not None and self._job is not None:
            self.control.stop.set()
            self._set_state("stopping")

    def save_now(self) -> None:
        if self.control is not None and self._job is not None:
            self.control.save_now.set()

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Stop and wait for the thread (application exit); True when no thread is left running."""
        job = self._job
        if job is None:
            return True
        self.stop()
        # join, not the job's shutdown: cancelling the job would cut the run off before its checkpoint.
        return job.join(timeout_ms)

    @Slot(list)
    def _on_batch(self, batch: list[Event]) -> None:
        for ev in batch:
            if isinstance(ev, Paused):
                self._set_state("paused")
            elif isinstance(ev, Resumed) and self._state != "stopping":
                self._set_state("running")
            elif isinstance(ev, TERMINAL):
                self._last_terminal = ev
        self.events.emit(batch)

    @Slot(bool)
    def _on_job_done(self, cancelled: bool) -> None:
        # The job has delivered its last batch before this.
        self._job = None
        terminal = self._last_terminal
        final = "finished" if isinstance(terminal, Finished) else "stopped" if isinstance(terminal, Stopped) else "failed"
        self._set_state("idle")
        self.finished.emit(final)


# -- watching a run directory -----------------------------------------------------------------


class RunOpenError(AlexguiError):
    """A run directory that cannot be shown; the message names the folder and the problem."""


class RunWatcher(QObject):
    """Reads a run directory's history, then follows new lines of its metrics.jsonl with a timer."""

    events = Signal(list)
    problems = Signal(list)
    restarted = Signal()  # metrics.jsonl was replaced or truncated: the events that follow are the whole story

    def __init__(self, path: str | Path, poll_ms: int = WATCH_POLL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self._follower: MetricsFollower | None = None
        self._restarts = 0
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)

    def open(self) -> tuple[list[Event], list[str]]:
        """The run's history so far and any problems in it; raises RunOpenError for an unusable folder."""
        from alexgui.engine.store.metrics_log import MetricsFollower
        from alexgui.engine.store.rundir import RunDir

        try:
            run = RunDir.open(self.path)
        except Exception as e:  # noqa: BLE001 - whatever is wrong, say it and keep the app up
            raise RunOpenError(str(e) if str(self.path) in str(e) else f"{self.path}: {e}") from None
        metrics = Path(run.metrics_path)
        try:
            self._follower = MetricsFollower(metrics)
            history, problems = _news(self._follower)
        except OSError as e:
            raise RunOpenError(f"{metrics}: cannot read ({e})") from None
        return history, problems

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @Slot()
    def poll(self) -> None:
        follower = self._follower
        if follower is None:
            return
        try:
            new, problems = _news(follower)
        except OSError as e:
            self.problems.emit([f"{self.path}: cannot read metrics ({e})"])
            return
        restarts = follower.restarts
        if restarts != self._restarts:
            self._restarts = restarts
            self.restarted.emit()
        if problems:
            self.problems.emit(problems)
        if new:
            self.events.emit(new)


def _news(follower: MetricsFollower) -> tuple[list[Event], list[str]]:
    """The events of the lines added since the last look, and the problems found since (each once)."""
    events = follower.poll()
    problems = list(follower.problems)
    follower.problems.clear()
    return events, problems

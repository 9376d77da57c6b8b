"""Long jobs off the GUI thread: a generator runs on a QThread, the GUI gets its results as signals.

The one worker family of the app: every panel's background work and the training run use it. The
shape follows napari's and superqt's thread workers: the job is a plain function that yields results
(and may call `progress`), it stops cooperatively when its `stop` event is set, and the object the GUI
talks to (`Job`) lives in the GUI thread and owns the thread. Connect every signal, then start():

    job = Job(classify_many, paths, predictor=p)      # fn(*args, stop=Event, progress=callable, **kw)
    job.yielded.connect(add_card)
    job.progress.connect(bar.update)
    job.errored.connect(show_error)                    # the exception itself (failed: its message)
    job.done.connect(on_done)                          # emitted in the GUI thread after the thread ended
    job.start()
    ...
    job.cancel()                                       # cooperative; done follows

A job that yields many small items (a training run: one event per step) can ask for them in batches:
with `batch_ms`, items are queued without a signal each and `batch(list)` hands them to the GUI at
most every `batch_ms`, and once more before `done`, so drawing takes little from the work.

Pausing is left to the work itself: only the training loop pauses, and it must know it is paused (to
record it and to stop its clock), so the training session pauses it through the engine's TrainControl.

`done` is emitted from the GUI thread once the QThread has really finished, so tests can wait on it
(waiting on QThread.finished itself is flaky on PySide6). `running_jobs()` lists jobs not yet done,
for a test fixture that fails any test leaving a thread behind.
"""

from __future__ import annotations

import collections
import threading
import traceback
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

_RUNNING: weakref.WeakSet[Job] = weakref.WeakSet()
_ALIVE: set[Job] = set()  # a started job must outlive its Python owner until its thread ends


class _Runner(QObject):
    """Lives on the worker thread; iterates the job and reports through queued signals."""

    yielded = Signal(object)
    progress = Signal(int, int, str)
    errored = Signal(object)
    finished = Signal()

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        stop: threading.Event,
        sink: collections.deque | None,
    ) -> None:
        super().__init__()
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._stop = stop
        # deque.append is atomic: no lock, and the GUI thread takes the items at its own pace.
        self._deliver: Callable[[Any], None] = sink.append if sink is not None else self.yielded.emit

    def _report(self, done: int, total: int, message: str = "") -> None:
        self.progress.emit(int(done), int(total), str(message))

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(*self._args, stop=self._stop, progress=self._report, **self._kwargs)
            if isinstance(result, Iterator):
                for item in result:
                    self._deliver(item)
                    if self._stop.is_set():
                        result.close()  # type: ignore[attr-defined]
                        break
            elif result is not None:
                self._deliver(result)
        except Exception as e:  # noqa: BLE001 - reported to the GUI, which shows it
            self.errored.emit(e)
        finally:
            self.finished.emit()


class Job(QObject):
    """One background job; see the module docstring. Not reusable: make a new Job per run.

    `thread_name` names the QThread (the operating system shows it too); `batch_ms` > 0 delivers the
    yielded items as `batch(list)` instead of one `yielded` each. Both are keyword-only and taken
    from the keywords before the rest go to `fn`.
    """

    yielded = Signal(object)
    batch = Signal(list)  # with batch_ms: the items yielded since the last batch, in order
    progress = Signal(int, int, str)  # done, total, message
    errored = Signal(object)  # the exception the job raised
    done = Signal(bool)  # True when the job was cancelled

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        parent: QObject | None = None,
        thread_name: str = "",
        batch_ms: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(parent)
        self._stop = threading.Event()
        self._thread: QThread | None = None
        self._thread_name = thread_name or f"alexgui-job-{getattr(fn, '__name__', 'job').strip('_')}"
        self._queue: collections.deque[Any] | None = collections.deque() if batch_ms > 0 else None
        self._timer: QTimer | None = None
        if self._queue is not None:
            self._timer = QTimer(self)
            self._timer.setInterval(batch_ms)
            self._timer.timeout.connect(self._emit_batch)
        self._runner = _Runner(fn, args, kwargs, self._stop, self._queue)
        self._started = False
        self._finished = False

    def start(self) -> None:
        if self._started:
            raise RuntimeError("a Job runs once; create a new one")
        self._started = True
        thread = QThread()
        thread.setObjectName(self._thread_name)
        self._thread = thread
        self._runner.moveToThread(thread)
        # The runner's signals cross threads: Qt queues them into this (GUI-thread) object.
        self._runner.yielded.connect(self.yielded)
        self._runner.progress.connect(self.progress)
        self._runner.errored.connect(self._on_errored)
        # Direct: QThread.quit is thread-safe, and queued to the GUI thread it would never arrive while
        # join() or shutdown() blocks that thread in wait(): a deadlock until the timeout.
        self._runner.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.started.connect(self._runner.run)
        thread.finished.connect(self._on_thread_finished)
        _RUNNING.add(self)
        _ALIVE.add(self)
        thread.start()
        if self._timer is not None:
            self._timer.start()

    @property
    def name(self) -> str:
        """Its thread's name (what the operating system and a leak report show)."""
        return self._thread_name

    def cancel(self) -> None:
        """Ask the job to stop at its next check; `done(True)` follows."""
        self._stop.set()

    def is_running(self) -> bool:
        """Started and `done` not yet emitted (the thread may have just ended)."""
        return self._started and not self._finished

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the thread has ended; True if it did. `done` still needs the event loop to run."""
        if self._thread is None:
            return True
        return self._thread.wait(msecs)

    def join(self, msecs: int = 30000) -> bool:
        """Wait for the thread without cancelling; once it has ended, deliver the last batch and
        `done` now (the queued delivery may not come before the caller goes away). True if it ended."""
        thread = self._thread
        if thread is None:
            return True
        if not thread.wait(msecs):
            return False
        self._on_thread_finished()
        return True

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel, then join (window closing, panel deleted); True if the thread ended."""
        self.cancel()
        return self.join(msecs)

    @Slot(object)
    def _on_errored(self, error: BaseException) -> None:
        self.errored.emit(error)

    @Slot()
    def _emit_batch(self) -> None:
        queue = self._queue
        if not queue:
            return
        items = []
        while True:
            try:
                items.append(queue.popleft())
            except IndexError:
                break
        self.batch.emit(items)

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._finished:
            return
        self._finished = True
        _RUNNING.discard(self)
        thread = self._thread
        self._thread = None
        if thread is not None:
            thread.wait()
            thread.deleteLater()
        self._runner.deleteLater()
        if self._timer is not None:
            self._timer.stop()
            self._emit_batch()  # what the job yielded after the last tick
        self.done.emit(self._stop.is_set())
        _ALIVE.discard(self)


def running_jobs() -> list[Job]:
    """Jobs started and not yet finished (their thread may still run)."""
    return [job for job in list(_RUNNING) if job.is_running()]


def shutdown_all(msecs: int = 30000) -> list[Job]:
    """Cancel every running job and wait for its thread (the app is quitting); the jobs still running
    after `msecs`. A QThread destroyed while it runs aborts with "QThread: Destroyed while thread is
    still running", so nothing may be left running when the interpreter exits."""
    for job in running_jobs():
        job.cancel()
    return [job for job in running_jobs() if not job.join(msecs)]


def describe_error(e: BaseException) -> str:
    """The message a user reads for an error: its text, or its type when it has none."""
    text = str(e).strip()
    if not text:
        text = "".join(traceback.format_exception_only(type(e), e)).strip()
    return text

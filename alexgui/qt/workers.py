"""Long jobs off the GUI thread: a generator runs on a QThread, the GUI gets its results as signals.

The shape follows napari's and superqt's thread workers: the job is a plain function that yields
results (and may call `progress`), it stops cooperatively when its `stop` event is set, and the
object the GUI talks to (`Job`) lives in the GUI thread and owns the thread. Connect every signal,
then call start():

    job = Job(classify_many, paths, predictor=p)      # fn(*args, stop=Event, progress=callable, **kw)
    job.yielded.connect(add_card)
    job.progress.connect(bar.update)
    job.failed.connect(show_error)
    job.done.connect(on_done)                          # emitted in the GUI thread after the thread ended
    job.start()
    ...
    job.cancel()                                       # cooperative; done follows

`done` is emitted from the GUI thread once the QThread has really finished, so tests can wait on it
(waiting on QThread.finished itself is flaky on PySide6). `running_jobs()` lists jobs not yet done,
for a test fixture that fails any test leaving a thread behind.
"""

from __future__ import annotations

import threading
import traceback
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

_RUNNING: weakref.WeakSet[Job] = weakref.WeakSet()
_ALIVE: set[Job] = set()  # a started job must outlive its Python owner until its thread ends


class _Runner(QObject):
    """Lives on the worker thread; iterates the job and reports through queued signals."""

    yielded = Signal(object)
    progress = Signal(int, int, str)
    failed = Signal(str)
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, stop: threading.Event) -> None:
        super().__init__()
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._stop = stop

    def _report(self, done: int, total: int, message: str = "") -> None:
        self.progress.emit(int(done), int(total), str(message))

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(*self._args, stop=self._stop, progress=self._report, **self._kwargs)
            if isinstance(result, Iterator):
                for item in result:
                    self.yielded.emit(item)
                    if self._stop.is_set():
                        result.close()  # type: ignore[attr-defined]
                        break
            elif result is not None:
                self.yielded.emit(result)
        except Exception as e:  # noqa: BLE001 - reported to the GUI, which shows it
            self.failed.emit(_describe(e))
        finally:
            self.finished.emit()


class Job(QObject):
    """One background job; see the module docstring. Not reusable: make a new Job per run."""

    yielded = Signal(object)
    progress = Signal(int, int, str)  # done, total, message
    failed = Signal(str)
    done = Signal(bool)  # True when the job was cancelled

    def __init__(self, fn: Callable[..., Any], *args: Any, parent: QObject | None = None, **kwargs: Any) -> None:
        super().__init__(parent)
        self._stop = threading.Event()
        self._thread: QThread | None = None
        self._runner = _Runner(fn, args, kwargs, self._stop)
        self._started = False
        self._finished = False

    def start(self) -> None:
        if self._started:
            raise RuntimeError("a Job runs once; create a new one")
        self._started = True
        thread = QThread()
        self._thread = thread
        self._runner.moveToThread(thread)
        # The runner's signals cross threads: Qt queues them into this (GUI-thread) object.
        self._runner.yielded.connect(self.yielded)
        self._runner.progress.connect(self.progress)
        self._runner.failed.connect(self.failed)
        # Direct: QThread.quit is thread-safe, and queued to the GUI thread it would never arrive while
        # shutdown() blocks that thread in wait(): a deadlock until the timeout.
        self._runner.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.started.connect(self._runner.run)
        thread.finished.connect(self._on_thread_finished)
        _RUNNING.add(self)
        _ALIVE.add(self)
        thread.start()

    def cancel(self) -> None:
        """Ask the job to stop at its next check; `done(True)` follows."""
        self._stop.set()

    def is_running(self) -> bool:
        return self._started and not self._finished

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the thread has ended (for shutdown); True if it did. `done` still needs the
        event loop to run."""
        if self._thread is None:
            return True
        return self._thread.wait(msecs)

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
        self.done.emit(self._stop.is_set())
        _ALIVE.discard(self)

    def shutdown(self, msecs: int = 30000) -> None:
        """Cancel and wait for the thread (window closing, panel deleted)."""
        self.cancel()
        thread = self._thread
        if thread is not None and thread.wait(msecs):
            # The queued finished signal may not be delivered before the caller goes away.
            self._on_thread_finished()


def running_jobs() -> list[Job]:
    """Jobs started and not yet finished (their thread may still run)."""
    return [job for job in list(_RUNNING) if job.is_running()]


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    if not text:
        text = "".join(traceback.format_exception_only(type(e), e)).strip()
    return text

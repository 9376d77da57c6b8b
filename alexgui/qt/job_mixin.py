"""A panel's one background job, written once (as Orange's ConcurrentWidgetMixin): the job it is
running, whether it is busy, cancel, shutdown when it closes, and what to do once the job has ended.

    class RetrievalPanel(JobMixin, QWidget):          # the mixin first, so its closeEvent runs
        def build(self) -> None:
            job = self.new_job(build_index, folder)    # a workers.Job owned by the panel, not started
            job.yielded.connect(self._on_index)
            job.start()

        def job_done(self, cancelled: bool) -> None:   # the job has ended; the panel is idle again
            ...

A panel runs one job at a time: `new_job` refuses a second while one runs. `after_job(callback)` runs
the callback once the current job has ended, or now when none runs: a question asked while a job
finishes (a dialog runs its own event loop) cannot miss the end of the job that way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alexgui.qt.workers import Job


class JobMixin:
    """See the module docstring. Mix into a QWidget (before it in the bases); no __init__ needed."""

    _job: Job | None = None
    _after_job: list[Callable[[], None]] | None = None

    def new_job(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """A Job for `fn` (see workers.Job), owned by this panel; connect its signals, then start it."""
        if self.is_busy():
            raise RuntimeError(f"{type(self).__name__} runs one job at a time")
        job = Job(fn, *args, parent=self, **kwargs)  # type: ignore[arg-type]
        job.done.connect(self._on_job_done)
        self._job = job
        return job

    def is_busy(self) -> bool:
        return self._job is not None and self._job.is_running()

    def cancel(self) -> None:
        """Ask the running job to stop; `job_done(True)` follows."""
        if self._job is not None:
            self._job.cancel()

    def after_job(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the current job has ended (after `job_done`), or now if none runs."""
        if not self.is_busy():
            callback()
            return
        if self._after_job is None:
            self._after_job = []
        self._after_job.append(callback)

    def job_done(self, cancelled: bool) -> None:
        """Called in the GUI thread when the job has ended and the panel is idle again."""

    def shutdown(self, msecs: int = 30000) -> None:
        """Cancel the job and wait for its thread (window closing, panel deleted)."""
        self._after_job = None  # nothing new starts once the panel is going away
        if self._job is not None:
            self._job.shutdown(msecs)

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)  # type: ignore[misc]

    def _on_job_done(self, cancelled: bool) -> None:
        self._job = None
        self.job_done(cancelled)
        waiting, self._after_job = self._after_job or [], None
        for callback in waiting:
            callback()

"""Work the training loop hands to a helper thread: preparation that reports progress as events, and
batches read ahead of the GPU."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from alexgui.engine.events import Event, Progress

T = TypeVar("T")


def reporting(
    fn: Callable[..., T], step: int, epoch: int, *args: Any, stage: str | None = None, **kwargs: Any
) -> Generator[Event, None, T]:
    """Run fn(*args, progress=..., **kwargs) in a thread, yielding its progress as Progress events.

    fn reports progress(stage, done, total), or progress(done, total) when `stage` names it here.
    """
    updates: queue.Queue[tuple[str, int, int] | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(*report: Any) -> None:
        updates.put((stage, *report) if stage is not None else report)

    def target() -> None:
        try:
            outcome["value"] = fn(*args, progress=progress, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = e
        finally:
            updates.put(None)

    worker = threading.Thread(target=target, name=f"alexgui-{getattr(fn, '__name__', 'work')}", daemon=True)
    worker.start()
    while (item := updates.get()) is not None:
        name, done, total = item
        yield Progress(step, epoch, stage=name, done=done, total=total)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class _ProducerFailed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def prefetched(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """`items`, produced up to `depth` ahead in a background thread, so that reading the next batch out
    of the cache into pinned memory overlaps the GPU's work on this one (the step waits on the GPU)."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    finished = threading.Event()

    def put(item: Any) -> bool:
        while not finished.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer's thread
            put(_ProducerFailed(e))
            return
        put(_END)

    worker = threading.Thread(target=produce, name="alexgui-prefetch", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, _ProducerFailed):
                raise item.error
            yield item
    finally:
        finished.set()
        worker.join()

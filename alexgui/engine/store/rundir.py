"""Run directories: config.toml, metrics.jsonl and checkpoints/ (the log's format and readers: metrics_log.py).

    RUN/config.toml                  the RunConfig (written atomically)
    RUN/metrics.jsonl                one JSON event per line, appended while training
    RUN/preflight.json               files excluded before training, with reasons
    RUN/checkpoints/last.safetensors, best.safetensors, ...

The log is written with one write() per complete line on a file opened for appending, so a reader
polling the file (another process, the desktop app) sees whole lines plus at most one partial last
line, which it ignores until the rest arrives. A writer killed mid-line leaves such a partial line
for good; the next writer of the run cuts it off before appending, so new lines are not glued to it.
NaN and infinite floats (a diverged loss must be recordable) are written as the strings "nan",
"inf" and "-inf" in float fields and turned back into floats by the readers.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from alexgui.config import ConfigError, RunConfig
from alexgui.engine.events import Event
from alexgui.engine.store.atomic import (
    atomic_write_text,
    fsync_dir,
    remove_stale_temporaries,
)
from alexgui.engine.store.metrics_log import METRICS_NAME, encode_event, read_events
from alexgui.errors import AlexguiError

CONFIG_NAME = "config.toml"
CHECKPOINTS_NAME = "checkpoints"
PREFLIGHT_NAME = "preflight.json"

# fsync is a disk round trip: do it in batches for step lines, at once for the lines that matter
# after a crash (a checkpoint exists, the run ended).
FSYNC_EVERY_LINES = 1000
FSYNC_EVERY_SECONDS = 2.0
_SYNC_NOW = frozenset({"run_started", "epoch", "checkpoint", "finished", "stopped", "failed"})
_CHUNK = 64 * 1024


class RunDirError(AlexguiError):
    """A run folder that cannot be created, opened or written; the message names the path.

    str() is the message as given (it already names the path, so AlexguiError's "PATH: problem"
    would name it twice); `.problem` is the message without a leading "PATH: ".
    """

    path: str

    def __init__(self, message: str, path: str | os.PathLike[str]) -> None:
        super().__init__(message)
        self.path = str(path)
        self.problem = message.removeprefix(f"{self.path}: ")

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[RunDirError], tuple[str, str]]:
        return (type(self), (str(self), self.path))


class RunDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._close_fd: weakref.finalize | None = None
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_NAME

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / "last.safetensors"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints_dir / "best.safetensors"

    @property
    def preflight_path(self) -> Path:
        return self.path / PREFLIGHT_NAME

    @classmethod
    def create(cls, path: str | os.PathLike[str], cfg: RunConfig, exist_ok: bool = False) -> RunDir:
        """Make a run folder and write its config.toml.

        With exist_ok=True an existing run is reopened (to resume) and its config.toml replaced by
        `cfg`; a folder that holds anything else is never taken over.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: exists and is a file, not a folder", path)
        if path.is_dir():
            _check_reusable(path, exist_ok)
        run = cls(path)
        try:
            # checkpoints/ first: a config.toml next to it is what marks the folder as a run.
            run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"{path}: cannot create the run folder ({e.strerror or e})", path) from None
        try:
            atomic_write_text(run.config_path, cfg.to_toml())
        except OSError as e:
            raise RunDirError(f"{path}: the folder is not writable ({e.strerror or e})", path) from None
        # Leftovers of a writer that was killed mid-save; a live writer's files are kept.
        remove_stale_temporaries(run.path)
        remove_stale_temporaries(run.checkpoints_dir)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """Open an existing run for reading (or for appending, e.g. to resume)."""
        path = Path(path)
        if not path.exists():
            raise RunDirError(f"{path}: no such folder", path)
        if not path.is_dir():
            raise RunDirError(f"{path}: not a folder (a run is a folder with config.toml)", path)
        run = cls(path)
        if not run.config_path.is_file():
            raise RunDirError(f"{run.config_path}: missing; {path} is not an alexgui run", run.config_path)
        run.config()
        return run

    def config(self) -> RunConfig:
        try:
            return RunConfig.load(self.config_path)
        except ConfigError as e:
            raise RunDirError(str(e), self.config_path) from None

    def append(self, event: Event) -> None:
        """Add one event to metrics.jsonl as one complete line (one write call)."""
        line = encode_event(event)
        with self._lock:
            fd = self._fd if self._fd is not None else self._open_for_append()
            try:
                _write_all(fd, line)
                self._unsynced += 1
                now = time.monotonic()
                if (
                    event.type in _SYNC_NOW
                    or self._unsynced >= FSYNC_EVERY_LINES
                    or now - self._last_sync >= FSYNC_EVERY_SECONDS
                ):
                    os.fsync(fd)
                    self._unsynced = 0
                    self._last_sync = now
            except OSError as e:
                raise RunDirError(f"{self.metrics_path}: cannot write ({e.strerror or e})", self.metrics_path) from None

    def sync(self) -> None:
        """Push appended lines to disk now."""
        with self._lock:
            if self._fd is not None and self._unsynced:
                os.fsync(self._fd)
                self._unsynced = 0
                self._last_sync = time.monotonic()

    def close(self) -> None:
        """Sync and close metrics.jsonl; a later append opens it again."""
        self.sync()
        with self._lock:
            if self._close_fd is not None:
                self._close_fd()
            self._fd = None
            self._close_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def events(self) -> tuple[list[Event], list[str]]:
        return read_events(self.metrics_path)

    def write_preflight(self, report: dict[str, Any]) -> None:
        atomic_write_text(self.preflight_path, json.dumps(report, indent=1, ensure_ascii=False) + "\n")

    def _open_for_append(self) -> int:
        new_file = not self.metrics_path.exists()
        try:
            if not new_file:
                _cut_partial_last_line(self.metrics_path)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
            fd = os.open(self.metrics_path, flags, 0o666)
        except OSError as e:
            problem = f"cannot open for writing ({e.strerror or e})"
            raise RunDirError(f"{self.metrics_path}: {problem}", self.metrics_path) from None
        if new_file:
            fsync_dir(self.path)
        # A raw descriptor (not a Python file object) closes silently when the RunDir is dropped.
        self._fd = fd
        self._close_fd = weakref.finalize(self, os.close, fd)
        return fd


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """A folder with config.toml beside checkpoints/ or metrics.jsonl (what RunDir.create makes)."""
    path = Path(path)
    return (path / CONFIG_NAME).is_file() and ((path / CHECKPOINTS_NAME).is_dir() or (path / METRICS_NAME).is_file())


def find_run_dirs(root: str | os.PathLike[str], max_depth: int = 4) -> list[Path]:
    """Run folders at or below `root` (not looking inside runs or hidden folders), sorted by path."""
    root = Path(root)
    found: list[Path] = []

    def visit(folder: Path, depth: int) -> None:
        if is_run_dir(folder):
            found.append(folder)
            return
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            visit(child, depth + 1)

    if root.is_dir():
        visit(root, 0)
    return sorted(found)


def _check_reusable(path: Path, exist_ok: bool) -> None:
    if is_run_dir(path):
        if not exist_ok:
            raise RunDirError(f"{path}: already an alexgui run; open it to resume, or choose a new folder", path)
        try:
            RunConfig.load(path / CONFIG_NAME)
        except ConfigError as e:
            raise RunDirError(f"{e}; not reusing {path}", path / CONFIG_NAME) from None
        return
    try:
        empty = not any(path.iterdir())
    except OSError as e:
        raise RunDirError(f"{path}: cannot list the folder ({e.strerror or e})", path) from None
    if not empty:
        raise RunDirError(
            f"{path}: the folder is not empty and is not an alexgui run (no {CONFIG_NAME}); "
            "choose an empty or new folder",
            path,
        )


def _write_all(fd: int, data: bytes) -> None:
    # One write() is the norm for a regular file; loop only if the kernel took less.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _cut_partial_last_line(path: Path) -> None:
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        end = size
        keep = 0
        while end > 0:
            start = max(0, end - _CHUNK)
            f.seek(start)
            chunk = f.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())



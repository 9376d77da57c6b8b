"""Run directories: config.toml, metrics.jsonl and checkpoints/ (the log's format and readers: metrics_log.py).

    RUN/alexgui-run.json             the marker: this folder is alexgui's (ownership.py)
    RUN/.alexgui.lock                the one writer's lock (lock.py); readers take none
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

Only alexgui's own folders are written to, by one writer at a time: create() makes a folder (exactly
one of two racing creators wins: the folder's lock decides, and the loser finds the winner's marker),
open_for_writing() and claim() take an existing run's lock, and a reader (open()) takes nothing.
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
from alexgui.engine.store.lock import FolderLock, lock_holder, take_lock
from alexgui.engine.store.metrics_log import METRICS_NAME, encode_event, read_events
from alexgui.engine.store.ownership import (
    CHECKPOINTS_NAME,
    CONFIG_NAME,
    MARKER_NAME,
    Ownership,
    describe_foreign,
    ownership,
    write_marker,
)
from alexgui.engine.store.ownership import find_run_dirs as find_run_dirs  # re-exported: readers list runs
from alexgui.engine.store.ownership import is_run_dir as is_run_dir
from alexgui.errors import AlexguiError

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
        self._writer: FolderLock | None = None
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
        """Make a run folder (new, or empty), mark it as alexgui's, take its writer lock and write config.toml.

        With exist_ok=True an existing alexgui run is claimed instead (to resume) and its config.toml
        replaced by `cfg`; a folder that holds anything else is never taken over.
        """
        path = Path(path)
        RunConfig.from_dict(cfg.to_dict(), "settings")  # ConfigError before anything is made (a config.toml loads)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: exists and is a file, not a folder", path)
        if path.is_dir() and ownership(path) is not Ownership.EMPTY:
            return cls._reuse(path, cfg, exist_ok)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"{path}: cannot create the run folder ({e.strerror or e})", path) from None
        run = cls(path)
        run._writer = _lock(path, "creating or training a run in this folder")
        # Under the lock: a racing creator that got here first has left its marker, and wins.
        if ownership(path) is not Ownership.EMPTY:
            run.release()
            return cls._reuse(path, cfg, exist_ok)
        try:
            write_marker(path)  # first: from now on the folder is provably alexgui's
            run.checkpoints_dir.mkdir(exist_ok=True)
            atomic_write_text(run.config_path, cfg.to_toml())
        except OSError as e:
            run.release()
            raise RunDirError(f"{path}: the folder is not writable ({e.strerror or e})", path) from None
        run._sweep()
        return run

    @classmethod
    def _reuse(cls, path: Path, cfg: RunConfig, exist_ok: bool) -> RunDir:
        kind = ownership(path)
        if kind is Ownership.FOREIGN:
            raise RunDirError(
                f"{path}: the folder is not empty and is not an alexgui run; {describe_foreign(path)} "
                "alexgui never writes into such a folder: choose an empty or new one",
                path,
            )
        if not exist_ok:
            raise RunDirError(f"{path}: already an alexgui run; continue it (alexgui train --resume, or in the app Train > "
                              "Continue selected run), start it over (--restart), or choose a new folder", path)
        try:
            RunConfig.load(path / CONFIG_NAME)
        except ConfigError as e:
            raise RunDirError(f"{e}; not reusing {path}", path / CONFIG_NAME) from None
        run = cls(path)
        run.claim()
        try:
            atomic_write_text(run.config_path, cfg.to_toml())
        except OSError as e:
            run.release()
            raise RunDirError(f"{path}: the folder is not writable ({e.strerror or e})", path) from None
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """Open an existing run for reading; takes no lock (the app follows a run another process writes)."""
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

    @classmethod
    def open_ours(cls, path: str | os.PathLike[str]) -> RunDir:
        """Open an existing run for reading, refusing a folder that is not alexgui's by what it holds
        (another tool's config.toml would not even load), as claim() would; nothing is written."""
        path = Path(path)
        if path.is_dir() and ownership(path) is Ownership.FOREIGN:
            raise RunDirError(
                f"{path}: not an alexgui run; {describe_foreign(path)} "
                "alexgui never writes into such a folder: train into an empty or new one instead",
                path,
            )
        return cls.open(path)

    @classmethod
    def open_for_writing(cls, path: str | os.PathLike[str]) -> RunDir:
        """Open an existing alexgui run to resume or restart it, as its one writer (see claim)."""
        run = cls.open_ours(path)
        run.claim()
        return run

    def claim(self) -> None:
        """Become the run's one writer, for as long as this object lives or until close().

        Refuses a folder that is not alexgui's (RunDirError) and one another writer holds (naming its
        process); marks a run made before the marker existed; removes what killed writers left.
        Calling it again while holding the lock does nothing.
        """
        if self._writer is not None and self._writer.held:
            return
        if ownership(self.path) is not Ownership.MARKED:  # checked before the lock file is made
            self._check_ours()
        self._writer = _lock(self.path, "training this run")
        try:
            kind = self._check_ours()
            if kind is Ownership.LEGACY:
                write_marker(self.path)
        except BaseException:
            self.release()
            raise
        self._sweep()

    @property
    def is_writer(self) -> bool:
        return self._writer is not None and self._writer.held

    def restart(self) -> None:
        """Clear the run's checkpoints, log, pre-flight report and filter history (nothing else), as its writer, to start over.

        Checkpoints go first: a restart cut short leaves a log without checkpoints, which resume refuses.
        """
        self.claim()
        self.close_log()
        doomed = sorted(self.checkpoints_dir.glob("*.safetensors")) + [self.metrics_path, self.preflight_path]
        doomed += sorted((self.path / "filters").glob("step-*.npz"))  # the filter history (store/filter_history.py)
        for file in doomed:
            try:
                file.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise RunDirError(f"{file}: cannot remove it to restart the run ({e.strerror or e})", file) from None
        fsync_dir(self.checkpoints_dir)
        fsync_dir(self.path)

    def release(self) -> None:
        """Give up the writer lock (another process may then resume the run)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def _check_ours(self) -> Ownership:
        kind = ownership(self.path)
        if kind is Ownership.FOREIGN:
            raise RunDirError(
                f"{self.path}: not an alexgui run; {describe_foreign(self.path)} alexgui never writes into such a folder",
                self.path,
            )
        if kind is Ownership.EMPTY:
            raise RunDirError(f"{self.path}: not an alexgui run (no {MARKER_NAME} or {CONFIG_NAME})", self.path)
        return kind

    def _sweep(self) -> None:
        # Leftovers of writers killed mid-save. The run's own files are written only under its lock,
        # which we hold, so their temporaries are stale whatever process id they name; anything else
        # (an ONNX export or an index written into the run folder) takes no lock: the pid rule.
        remove_stale_temporaries(self.path, locked_names=(CONFIG_NAME, MARKER_NAME, PREFLIGHT_NAME))
        remove_stale_temporaries(self.checkpoints_dir, locked_names=(self.last_checkpoint.name, self.best_checkpoint.name))
        if (self.path / "filters").is_dir():  # the filter history, written by the trainer under the lock too
            remove_stale_temporaries(self.path / "filters")

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
        """Sync and close metrics.jsonl and give up the writer lock; a later append opens the log again."""
        self.close_log()
        self.release()

    def close_log(self) -> None:
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
        if not self.is_writer:
            # A RunDir opened for reading may append (a front end recording a failure), but only to
            # alexgui's own run, and never beside its writer: cutting a partial last line would break
            # the line that writer is writing, or another tool's log.
            if ownership(self.path) not in (Ownership.MARKED, Ownership.LEGACY):
                raise RunDirError(f"{self.metrics_path}: not written: {self.path} is not an alexgui run", self.metrics_path)
            holder = lock_holder(self.path)
            if holder is not None:
                who = "this process" if holder == os.getpid() else f"process {holder}"
                raise RunDirError(f"{self.metrics_path}: not written: {who} is training this run", self.metrics_path)
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


def _lock(path: Path, doing: str) -> FolderLock:
    return take_lock(path, doing, lambda message: RunDirError(message, path), rule="a run has one writer at a time: ")


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



"""Run directories: config.toml, metrics.jsonl and checkpoints/, and the readers of its log.

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
import math
import os
import threading
import time
import types
import typing
import weakref
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

from alexgui.config import ConfigError, RunConfig
from alexgui.engine.events import EVENT_TYPES, Event, UnknownEvent, event_from_dict
from alexgui.engine.store.atomic import (
    atomic_write_text,
    fsync_dir,
    remove_stale_temporaries,
)
from alexgui.errors import AlexguiError

CONFIG_NAME = "config.toml"
METRICS_NAME = "metrics.jsonl"
CHECKPOINTS_NAME = "checkpoints"
PREFLIGHT_NAME = "preflight.json"

# fsync is a disk round trip: do it in batches for step lines, at once for the lines that matter
# after a crash (a checkpoint exists, the run ended).
FSYNC_EVERY_LINES = 1000
FSYNC_EVERY_SECONDS = 2.0
_SYNC_NOW = frozenset({"run_started", "epoch", "checkpoint", "finished", "stopped", "failed"})
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
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


def encode_event(event: Event) -> bytes:
    """One metrics.jsonl line, newline included: the JSON of event.to_dict()."""
    # The same dict as event.to_dict() without dataclasses.asdict's deep copy, which is most of the
    # cost of a step line; json.dumps copies nothing anyway.
    # The ignore: functools.cache takes Hashable arguments and mypy does not count a class as one
    # (python/mypy#11470); a class is hashable.
    d = {"type": event.type, **{name: getattr(event, name) for name in _field_names(type(event))}}  # type: ignore[arg-type]
    try:
        text = json.dumps(d, allow_nan=False, ensure_ascii=False)
    except ValueError:  # a NaN or infinity somewhere: rare, so only then walk the values
        text = json.dumps(_encode_nonfinite(d), allow_nan=False, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def decode_event(d: dict[str, Any]) -> Event:
    """Rebuild an event from a parsed line, restoring "nan"/"inf"/"-inf" in float fields.

    Only fields typed float (or list of float) are decoded, so a string such as a class named
    "nan" stays a string.
    """
    cls = _event_class(d)
    if cls is not None:
        scalars, lists = _float_fields(cls)  # type: ignore[arg-type]  # a class is hashable: python/mypy#11470
        for name in scalars:
            d[name] = _decode_float(d.get(name))
        for name in lists:
            value = d.get(name)
            if isinstance(value, list):
                d[name] = [_decode_float(v) for v in value]
    return event_from_dict(d)


def _decode_float(value: Any) -> Any:
    return _NONFINITE[value] if isinstance(value, str) and value in _NONFINITE else value


def read_events(path: str | os.PathLike[str]) -> tuple[list[Event], list[str]]:
    """Every event in a metrics.jsonl (or a run folder's), and a problem line for each bad line.

    An incomplete last line (a writer is mid-line or was killed there) is not a problem: it is
    ignored. A missing file is an empty log.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    except OSError as e:
        return [], [f"{path}: cannot read ({e.strerror or e})"]
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a partial line
    events: list[Event] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        event, problem = _parse_line(raw, f"{path} line {number}")
        if event is not None:
            events.append(event)
        if problem is not None:
            problems.append(problem)
    return events, problems


class MetricsFollower:
    """Tails a metrics.jsonl that another thread or process is appending to.

    poll() returns the events of the complete lines added since the last poll. Before the file
    exists poll() returns nothing; when it is truncated or replaced reading starts again from its
    first line and `restarts` goes up by one. Bad lines are collected in `problems`.
    """

    _PREFIX = 64  # bytes of the file's start remembered to notice a file rewritten in place

    def __init__(self, metrics_path: str | os.PathLike[str]) -> None:
        self.path = Path(metrics_path)
        self.problems: list[str] = []
        self.restarts = 0
        self._offset = 0  # bytes consumed, complete lines and the partial line alike
        self._partial = b""
        self._line_number = 0
        self._identity: tuple[int, int] | None = None
        self._prefix = b""

    def poll(self) -> list[Event]:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            if self._offset:
                self._restart()
            return []
        except OSError as e:
            unreadable = f"{self.path}: cannot read ({e.strerror or e})"
            if not self.problems or self.problems[-1] != unreadable:
                self.problems.append(unreadable)
            return []
        with f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            if self._identity is not None and (
                identity != self._identity or st.st_size < self._offset or not self._same_prefix(f)
            ):
                self._restart()
            self._identity = identity
            if self._partial and not self._partial_still_there(f):
                # A new writer cut off the partial line a killed writer left: forget it.
                self._offset -= len(self._partial)
                self._partial = b""
            f.seek(self._offset)
            data = f.read()
        if not data:
            return []
        if len(self._prefix) < self._PREFIX:
            self._prefix = (self._prefix + data)[: self._PREFIX]
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        events: list[Event] = []
        for raw in lines:
            self._line_number += 1
            event, problem = _parse_line(raw, f"{self.path} line {self._line_number}")
            if event is not None:
                events.append(event)
            if problem is not None:
                self.problems.append(problem)
        return events

    def _restart(self) -> None:
        self._offset = 0
        self._partial = b""
        self._line_number = 0
        self._prefix = b""
        self._identity = None
        self.restarts += 1

    def _same_prefix(self, f: typing.BinaryIO) -> bool:
        f.seek(0)
        return f.read(len(self._prefix)) == self._prefix

    def _partial_still_there(self, f: typing.BinaryIO) -> bool:
        f.seek(self._offset - len(self._partial))
        return f.read(len(self._partial)) == self._partial


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


def _parse_line(raw: bytes, where: str) -> tuple[Event | None, str | None]:
    if not raw.strip():
        return None, None
    try:
        d = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{where}: not JSON"
    if not isinstance(d, dict):
        return None, f"{where}: not a JSON object"
    try:
        return decode_event(d), None
    except UnknownEvent as e:
        return None, f"{where}: {e}"


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


def _encode_nonfinite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _encode_nonfinite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_nonfinite(v) for v in value]
    return value


def _event_class(d: dict[str, Any]) -> type[Event] | None:
    kind = d.get("type")
    return EVENT_TYPES.get(kind) if isinstance(kind, str) else None


@cache
def _field_names(cls: type[Event]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@cache
def _float_fields(cls: type[Event]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names of the fields typed float (optional or not) and of those typed list[float]."""
    hints = typing.get_type_hints(cls)
    scalars, lists = [], []
    for f in fields(cls):
        hint = hints.get(f.name)
        options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if float in options:
            scalars.append(f.name)
        elif any(typing.get_origin(o) is list and typing.get_args(o) == (float,) for o in options):
            lists.append(f.name)
    return tuple(scalars), tuple(lists)

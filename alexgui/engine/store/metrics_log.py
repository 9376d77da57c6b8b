"""The metrics log, metrics.jsonl: one JSON event per line. Encoding and decoding an event, reading a
whole log (with a problem line for each damaged one), and following a log another process is writing.

NaN and infinite floats (a diverged loss must be recordable) are written as the strings "nan", "inf"
and "-inf" in float fields and turned back into floats here. A reader sees whole lines plus at most
one partial last line, which it ignores until the rest arrives (rundir.py writes one line per write()).
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

from alexgui.engine.events import EVENT_TYPES, Event, UnknownEvent, event_from_dict

METRICS_NAME = "metrics.jsonl"
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


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
        d = _encode_nonfinite(d)
        text = json.dumps(d, allow_nan=False, ensure_ascii=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a file name that is not valid UTF-8) has no UTF-8 form; as a \udcXX
        # escape it is still valid JSON and reads back as the same string.
        return (json.dumps(d, allow_nan=False, ensure_ascii=True) + "\n").encode("ascii")


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

    Each poll reads only the bytes added since the last one (plus a few KiB of checks): an
    unfinished last line is kept as chunks, and whether it is still in the file (a new writer cuts
    off the partial line a killed one left) is checked on its first and last _CHECK bytes, not by
    reading it all again (a 300 MB line would cost 0.2 s on every poll).
    """

    _PREFIX = 64  # bytes of the file's start remembered to notice a file rewritten in place
    _CHECK = 4096  # bytes of each end of the partial line compared to notice it was cut off

    def __init__(self, metrics_path: str | os.PathLike[str]) -> None:
        self.path = Path(metrics_path)
        self.problems: list[str] = []
        self.restarts = 0
        self._offset = 0  # bytes consumed, complete lines and the partial line alike
        self._partial: list[bytes] = []  # the unfinished last line, as read
        self._partial_len = 0
        self._partial_head = b""  # its first _CHECK bytes
        self._partial_tail = b""  # its last _CHECK bytes
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
            if self._partial_len and not self._partial_still_there(f):
                # A new writer cut off the partial line a killed writer left: forget it.
                self._offset -= self._partial_len
                self._forget_partial()
            f.seek(self._offset)
            data = f.read()
        if not data:
            return []
        if len(self._prefix) < self._PREFIX:
            self._prefix = (self._prefix + data)[: self._PREFIX]
        self._offset += len(data)
        end = data.rfind(b"\n")
        if end < 0:  # still no end of line: keep the bytes, parse nothing
            self._keep_partial(data)
            return []
        lines = data[:end].split(b"\n")
        if self._partial:
            lines[0] = b"".join([*self._partial, lines[0]])
            self._forget_partial()
        self._keep_partial(data[end + 1 :])
        events: list[Event] = []
        for raw in lines:
            self._line_number += 1
            event, problem = _parse_line(raw, f"{self.path} line {self._line_number}")
            if event is not None:
                events.append(event)
            if problem is not None:
                self.problems.append(problem)
        return events

    def _keep_partial(self, data: bytes) -> None:
        if not data:
            return
        self._partial.append(data)
        self._partial_len += len(data)
        if len(self._partial_head) < self._CHECK:
            self._partial_head = (self._partial_head + data)[: self._CHECK]
        self._partial_tail = (self._partial_tail + data)[-self._CHECK :]

    def _forget_partial(self) -> None:
        self._partial = []
        self._partial_len = 0
        self._partial_head = self._partial_tail = b""

    def _restart(self) -> None:
        self._offset = 0
        self._forget_partial()
        self._line_number = 0
        self._prefix = b""
        self._identity = None
        self.restarts += 1

    def _same_prefix(self, f: typing.BinaryIO) -> bool:
        f.seek(0)
        return f.read(len(self._prefix)) == self._prefix

    def _partial_still_there(self, f: typing.BinaryIO) -> bool:
        f.seek(self._offset - self._partial_len)
        if f.read(len(self._partial_head)) != self._partial_head:
            return False
        f.seek(self._offset - len(self._partial_tail))
        return f.read(len(self._partial_tail)) == self._partial_tail

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

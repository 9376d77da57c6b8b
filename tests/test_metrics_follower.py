"""The metrics-log follower reads only what was added since its last poll, even while the last line
is a long unfinished one (issue 12: a 300 MB partial line was read again on every poll)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from alexgui.engine.events import Paused, PreflightReport
from alexgui.engine.store import metrics_log
from alexgui.engine.store.metrics_log import MetricsFollower, encode_event


class _CountingFile(io.FileIO):
    read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(-1 if size is None else size)
        _CountingFile.read_bytes += len(data)
        return data

    def readall(self) -> bytes:
        data = super().readall()
        _CountingFile.read_bytes += len(data)
        return data


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> type[_CountingFile]:
    """Every byte the follower reads from its file, counted (unbuffered, so nothing is read ahead)."""

    def counting_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> _CountingFile:
        assert mode == "rb"
        return _CountingFile(path, "r")

    _CountingFile.read_bytes = 0
    monkeypatch.setattr(metrics_log, "open", counting_open, raising=False)
    return _CountingFile


def test_a_long_partial_line_is_not_read_again_on_every_poll(tmp_path: Path, counted: type[_CountingFile]) -> None:
    path = tmp_path / "metrics.jsonl"
    first = encode_event(Paused(1, 0))
    big = encode_event(PreflightReport(2, 0, images_ok=1, skipped=[{"path": "x" * 2_000_000, "reason": "r"}]))
    path.write_bytes(first + big[:1_000_000])
    follower = MetricsFollower(path)
    assert [type(e) for e in follower.poll()] == [Paused]
    assert counted.read_bytes <= len(first) + 1_000_000 + 64
    for step in range(10):  # the writer adds a little at a time; each poll reads about that much
        start = 1_000_000 + step * 1000
        with open(path, "ab") as f:
            f.write(big[start : start + 1000])
        counted.read_bytes = 0
        assert follower.poll() == []
        assert counted.read_bytes <= 1000 + 64 + 2 * MetricsFollower._CHECK, counted.read_bytes
    with open(path, "ab") as f:
        f.write(big[1_010_000:])
    counted.read_bytes = 0
    events = follower.poll()
    assert [type(e) for e in events] == [PreflightReport]
    assert isinstance(events[0], PreflightReport) and len(events[0].skipped[0]["path"]) == 2_000_000
    assert counted.read_bytes <= len(big) - 1_010_000 + 64 + 2 * MetricsFollower._CHECK
    assert follower.problems == []


def test_a_partial_line_cut_off_by_a_new_writer_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    first = encode_event(Paused(1, 0))
    path.write_bytes(first + b'{"type": "paused", "step": 2, "ep' + b"x" * 20_000)
    follower = MetricsFollower(path)
    assert len(follower.poll()) == 1
    # A resumed writer cuts the partial line and appends whole lines, longer than what was there.
    replacement = encode_event(PreflightReport(3, 0, images_ok=1, skipped=[{"path": "y" * 30_000, "reason": "r"}]))
    path.write_bytes(first + replacement)
    events = follower.poll()
    assert [type(e) for e in events] == [PreflightReport]
    assert follower.problems == [] and follower.restarts == 0

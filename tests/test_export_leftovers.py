"""The temporary file of a killed export (the whole model, 100-250 MB) is swept at the next export into
its folder, and only when no live process is writing it (issue 12, item 6).

The sweep comes before the model is traced (the space is freed before a new copy is written), so the
exporter itself is replaced by one that gives up at once: the test costs no export (test_onnx.py
exports for real)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexgui.engine.inference.onnx_export import ExportError, export_onnx
from alexgui.engine.store.atomic import is_temporary
from tests.explore_helpers import small_torch_predictor


def dead_pid() -> int:
    """The process id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_next_export_removes_a_killed_exports_temporary_but_not_a_live_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = dead_pid()
    killed = tmp_path / f".model.onnx.tmp-{gone}-0badc0de"  # what atomic_target names it while writing
    killed_other = tmp_path / f".other.onnx.tmp-{gone}-12345678"
    live = tmp_path / f".model.onnx.tmp-{os.getppid()}-cafe0001"  # another process, still running
    for path in (killed, killed_other, live):
        assert is_temporary(path)  # the names the writer really uses, or this test proves nothing
        path.write_bytes(b"\0" * 4096)
    mine = tmp_path / "model.onnx.tmp"  # a user's own file that only looks similar
    mine.write_bytes(b"keep")

    def give_up(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the exporter gave up")

    monkeypatch.setattr(torch.onnx, "export", give_up)
    said: list[str] = []
    with pytest.raises(ExportError, match="the exporter gave up"):
        export_onnx(small_torch_predictor(), tmp_path / "model.onnx", progress=said.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, mine.name])
    assert mine.read_bytes() == b"keep"
    (note,) = [s for s in said if "leftover" in s]
    assert killed.name in note and killed_other.name in note and live.name not in note

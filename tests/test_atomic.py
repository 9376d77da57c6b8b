"""Atomic writes: the target holds the old content or the new, never a mix, and no debris is left."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alexgui.engine.store.atomic import (
    atomic_open,
    atomic_target,
    atomic_write_bytes,
    atomic_write_text,
    is_temporary,
    remove_stale_temporaries,
)


class Boom(Exception):
    pass


def test_write_bytes_creates_parents_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(target, b"\x00\x01data")
    assert target.read_bytes() == b"\x00\x01data"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_write_text_replaces_and_keeps_newlines_exactly(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text("old\n", encoding="utf-8")
    atomic_write_text(target, "ünïcode\r\nline two\n")
    assert target.read_bytes() == "ünïcode\r\nline two\n".encode()


def test_streaming_writer_that_raises_midway_leaves_old_content(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"precious old content")
    with pytest.raises(Boom):
        with atomic_open(target, "wb") as f:
            f.write(b"half of the new con")
            f.flush()
            raise Boom()
    assert target.read_bytes() == b"precious old content"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_keyboard_interrupt_also_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target, "w") as f:
            f.write("partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_target_gives_a_temporary_path_in_the_same_folder(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    with atomic_target(target) as tmp:
        assert tmp.parent == target.parent
        assert is_temporary(tmp)
        assert not target.exists()
        tmp.write_bytes(b"exported")
    assert target.read_bytes() == b"exported"
    assert not tmp.exists()


def test_atomic_target_removes_the_temporary_on_error(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(Boom):
        with atomic_target(target) as tmp:
            tmp.write_bytes(b"new but broken")
            raise Boom()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_replacing_keeps_the_permissions_of_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "private.txt"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o600)
    atomic_write_text(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text(encoding="utf-8") == "new"


def test_very_long_names_still_get_a_valid_temporary_name(tmp_path: Path) -> None:
    target = tmp_path / ("n" * 250)
    atomic_write_bytes(target, b"x")
    assert target.read_bytes() == b"x"


def test_unsupported_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "ab"):
            pass


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    dead = tmp_path / f".last.safetensors.tmp-{dead_pid}-0badcafe"
    live = tmp_path / f".last.safetensors.tmp-{os.getpid()}-0123abcd"
    unrelated = tmp_path / "last.safetensors"
    for p in (dead, live, unrelated):
        p.write_bytes(b"x")
    if os.name == "nt":
        os.utime(dead, (0, 0))  # Windows falls back to age
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, unrelated.name])

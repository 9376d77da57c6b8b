"""Whether a folder is an alexgui run: the marker file alexgui writes when it creates a run, and the
signs by which runs made before the marker existed are still recognised.

    RUN/alexgui-run.json    {"format": "alexgui-run", "version": 1, "alexgui_version": ..., "created_at": ...}

Only a folder that is provably alexgui's is ever written to: a config.toml and a metrics.jsonl alone
prove nothing (other tools use the same names). A run without the marker counts as alexgui's when its
checkpoint says it is an alexgui training checkpoint, its log's first line is an alexgui event, or its
config.toml is byte for byte what alexgui writes; such a run gets the marker when it is next resumed.
"""

from __future__ import annotations

import json
import os
import time
from enum import Enum
from pathlib import Path

from alexgui import __version__
from alexgui.config import ConfigError, RunConfig
from alexgui.engine.events import EVENT_TYPES
from alexgui.engine.store.atomic import atomic_write_text, is_temporary
from alexgui.engine.store.lock import LOCK_NAME
from alexgui.engine.store.metrics_log import METRICS_NAME

MARKER_NAME = "alexgui-run.json"
CONFIG_NAME = "config.toml"
CHECKPOINTS_NAME = "checkpoints"
MARKER_FORMAT = "alexgui-run"
MARKER_VERSION = 1
_CHECKPOINT_NAMES = ("last.safetensors", "best.safetensors")
_FIRST_LINE_LIMIT = 1 << 20  # an alexgui event line is far shorter (a pre-flight with many skips: < 1 MB)


class Ownership(Enum):
    EMPTY = "empty"  # missing, or nothing in it but a lock file: free to create a run in
    MARKED = "marked"  # carries alexgui's marker
    LEGACY = "legacy"  # an alexgui run made before the marker (gets one on its next resume)
    FOREIGN = "foreign"  # anything else: never written to


def ownership(path: str | os.PathLike[str]) -> Ownership:
    """What `path` is, reading a few small files; never writes."""
    path = Path(path)
    try:
        entries = [p for p in path.iterdir() if p.name != LOCK_NAME and not is_temporary(p)]
    except FileNotFoundError:
        return Ownership.EMPTY
    except OSError:
        return Ownership.FOREIGN
    if not entries:
        return Ownership.EMPTY
    if _has_marker(path):
        return Ownership.MARKED
    if _looks_like_old_alexgui_run(path):
        return Ownership.LEGACY
    return Ownership.FOREIGN


def write_marker(path: str | os.PathLike[str]) -> None:
    """Mark `path` as an alexgui run (atomically: a reader sees no marker or a whole one)."""
    marker = {"format": MARKER_FORMAT, "version": MARKER_VERSION, "alexgui_version": __version__, "created_at": time.time()}
    atomic_write_text(Path(path) / MARKER_NAME, json.dumps(marker, indent=1) + "\n")


def describe_foreign(path: str | os.PathLike[str]) -> str:
    """What a folder that is not alexgui's holds, in a few words, for the message refusing it."""
    path = Path(path)
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if p.name != LOCK_NAME)
    except OSError as e:
        return f"it cannot be listed ({e.strerror or e})."
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    if (path / CONFIG_NAME).exists() or (path / METRICS_NAME).exists():
        return f"it holds {shown} but no alexgui marker ({MARKER_NAME}), checkpoint or log: another tool's run?"
    return f"it holds {shown}."


def _has_marker(path: Path) -> bool:
    try:
        marker = json.loads((path / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT and isinstance(marker.get("version"), int)


def _looks_like_old_alexgui_run(path: Path) -> bool:
    return _has_alexgui_checkpoint(path) or _log_starts_with_an_alexgui_event(path) or _config_is_alexguis(path)


def _has_alexgui_checkpoint(path: Path) -> bool:
    # Imported here: store/checkpoint.py loads torch, which a reader of run folders need not wait for.
    from alexgui.engine.store.checkpoint import CheckpointError, read_meta

    for name in _CHECKPOINT_NAMES:
        file = path / CHECKPOINTS_NAME / name
        if not file.is_file():
            continue
        try:
            fmt = read_meta(file).get("format")
        except (CheckpointError, OSError):
            continue
        if isinstance(fmt, str) and fmt.startswith("alexgui-checkpoint/"):
            return True
    return False


def _log_starts_with_an_alexgui_event(path: Path) -> bool:
    try:
        with open(path / METRICS_NAME, "rb") as f:
            first = f.readline(_FIRST_LINE_LIMIT)
        line = json.loads(first)
    except (OSError, ValueError):
        return False
    # RunDir writes "type" first, then the event's step and epoch: its own line shape, not just any JSON.
    return (
        isinstance(line, dict)
        and next(iter(line), None) == "type"
        and line.get("type") in EVENT_TYPES
        and isinstance(line.get("step"), int)
        and isinstance(line.get("epoch"), int)
    )


def _config_is_alexguis(path: Path) -> bool:
    # A run killed before its first log line: its config.toml is exactly what RunConfig writes.
    try:
        text = (path / CONFIG_NAME).read_text(encoding="utf-8")
        return RunConfig.from_toml(text).to_toml() == text
    except (OSError, UnicodeDecodeError, ConfigError):
        return False


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """A folder laid out as a run: config.toml beside the marker, checkpoints/ or metrics.jsonl (what
    RunDir.create makes). For listing and reading; whether alexgui may write to it is ownership()'s call."""
    path = Path(path)
    return (path / CONFIG_NAME).is_file() and any(
        (path / name).exists() for name in (MARKER_NAME, CHECKPOINTS_NAME, METRICS_NAME)
    )


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

"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

Every write goes to a temporary file in the target's own folder (so the final rename never crosses
file systems), is flushed and fsync'ed, then os.replace'd onto the target, and the folder is fsync'ed
so the rename itself survives a power cut. If anything fails or the process is interrupted before
the rename, the target is untouched; an exception removes the temporary file, a hard kill can leave
one behind (named `.NAME.tmp-PID-RANDOM`), which `remove_stale_temporaries` cleans up later.
`process_alive` is the one check of whether a process id (in such a name, a lock file or a
feature file's name) may still run.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]+$")
# Leave room for the ".", ".tmp-PID-RANDOM" decoration inside the usual 255-byte name limit.
_MAX_STEM = 200


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` atomically, creating parent folders as needed."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Replace `path` with `text` atomically; newlines are written exactly as given."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Stream into a temporary file that replaces `path` only when the `with` block succeeds.

    mode is "wb" (binary) or "w" (text, UTF-8 unless `encoding` says otherwise, no newline
    translation).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', not {mode!r}")
    with atomic_target(path) as tmp:
        if mode == "wb":
            f: IO[Any] = open(tmp, "wb")
        else:
            f = open(tmp, "w", encoding=encoding or "utf-8", newline="")
        with f:  # closing flushes; atomic_target fsyncs the file before the rename
            yield f


@contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path` for a writer that needs a file name (safetensors,
    ONNX export); when the block succeeds the file is fsync'ed and renamed onto `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _reserve_temporary(target)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_dir(target.parent)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in `directory` durable; a no-op where folders cannot be synced."""
    if os.name == "nt":  # Windows cannot open a folder as a file; NTFS journals the rename itself
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (network shares, FUSE) refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def is_temporary(path: str | os.PathLike[str]) -> bool:
    """True for the temporary files this module creates (and a killed writer may leave behind)."""
    return _TEMP_NAME.match(Path(path).name) is not None


def remove_stale_temporaries(directory: str | os.PathLike[str], locked_names: Collection[str] = ()) -> list[Path]:
    """Delete temporaries in `directory` left by writers that no longer run; returns what was removed.

    A temporary whose writer is still alive (possibly another process, or another thread of this
    one, writing right now) is kept. `locked_names` are the targets (`config.toml`,
    `last.safetensors`) that only the holder of the folder's writer lock (store/lock.py) writes: a
    caller that holds that lock and is not writing yet passes them, and their temporaries all go,
    even one whose writer's process id has since been reused by an unrelated process. Writers that
    take no lock (an ONNX export or an index written into the folder) keep the pid rule.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m is None or not entry.is_file():
            continue
        if m["name"] not in locked_names and _writer_may_be_alive(int(m["pid"]), entry):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` may still run: this process, a live one, or (on Windows, where
    os.kill(pid, 0) would end the process instead of probing it) any."""
    if pid == os.getpid():
        return True
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: a live process owned by someone else
        return True
    return True


def _reserve_temporary(target: Path) -> Path:
    # O_EXCL makes the name ours even if two writers pick the same random suffix.
    stem = target.name[:_MAX_STEM]
    mode = _existing_mode(target)
    while True:
        tmp = target.with_name(f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        if mode is not None:
            # Replacing a file should not change who may read it.
            try:
                os.chmod(tmp, mode)
            except OSError:
                pass
        return tmp


def _existing_mode(target: Path) -> int | None:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return None


def _fsync_file(path: Path) -> None:
    # Writers such as safetensors close their file without fsync; reopen to push it to disk.
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _writer_may_be_alive(pid: int, entry: Path) -> bool:
    if not process_alive(pid):
        return False
    if os.name == "nt" and pid != os.getpid():
        # process_alive cannot tell there: a temporary untouched for a day has no writer left.
        try:
            return time.time() - entry.stat().st_mtime < 24 * 3600
        except OSError:
            return True
    return True

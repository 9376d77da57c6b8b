"""One writer per folder: an exclusive OS-level lock on a lock file inside it.

The lock is fcntl.flock on POSIX (msvcrt.locking on Windows): the kernel drops it when the process
ends in any way, SIGKILL included, so a lock is never left behind by a dead process and nothing has to
decide whether a lock is stale. The holder writes its process id into the file so that a refused
writer can say who holds the folder. Readers (the app following a run, `alexgui summary`) take no lock.

A lock belongs to the open file, not to the process: a second FolderLock on the same folder in the
same process is refused too, which is what keeps the app from training one run twice.

Two ways a lock can look held by nobody who is still there, both waited out instead of refused:

- `lock_holder` looks by taking the lock for an instant (there is no way to ask "is it locked?"
  without trying): a claimer that tries in that instant is refused, so a refused claimer tries again
  for about 50 ms (RETRY_S) before giving up;
- a forked child (a DataLoader worker of a trainer killed with SIGKILL) shares the lock's open file
  description, so the lock lasts until the child notices and exits too, a few seconds later; making
  the file descriptor non-inheritable does not help against fork. When the pid in the file is of a
  process that has ended, the claimer waits up to DEAD_HOLDER_WAIT_S for the lock, saying so once.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from alexgui.engine.store.atomic import process_alive
from alexgui.errors import AlexguiError

LOCK_NAME = ".alexgui.lock"

# File systems without locking (some network shares) answer these; the run goes on unlocked there,
# because refusing every run on such a share would be worse than the race the lock prevents.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
RETRY_S = 0.05  # longer than lock_holder's look at the lock
DEAD_HOLDER_WAIT_S = 10.0  # longer than a DataLoader worker takes to notice its parent has gone


def _say_waiting(message: str) -> None:
    print(f"alexgui: {message}", file=sys.stderr, flush=True)


class FolderBusyError(AlexguiError):
    """Another process (or another writer in this one) holds the folder's lock."""

    def __init__(self, path: str | os.PathLike[str], holder: int | None) -> None:
        if holder == os.getpid():
            who = "this process is already writing to it"
        elif holder is not None:
            who = f"process {holder} is writing to it; wait for it to end or stop it (kill {holder})"
        else:
            who = "another process is writing to it; wait for it to end"
        super().__init__(path, f"in use: {who}")
        self.holder = holder


class FolderLock:
    """The exclusive lock of `folder` (its lock file is created if missing), held until release()
    or until this object is garbage-collected or the process ends."""

    def __init__(self, folder: str | os.PathLike[str], on_wait: Callable[[str], None] = _say_waiting) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        except OSError as e:
            raise AlexguiError(self.folder, f"cannot create the lock file {LOCK_NAME} ({e.strerror or e})") from None
        try:
            holder = self._wait_for_lock(fd, on_wait)
        except BaseException:
            os.close(fd)
            raise
        if holder is not None:
            os.close(fd)
            raise FolderBusyError(self.folder, holder or None)
        self._fd: int | None = fd
        self._release = weakref.finalize(self, os.close, fd)  # closing the file drops the lock
        _write_pid(fd)

    def _wait_for_lock(self, fd: int, on_wait: Callable[[str], None]) -> int | None:
        """None once `fd` holds the lock; else the holder's pid (0 when unknown) after the waits
        described in the module docstring."""
        start = time.monotonic()
        said = False
        while not _try_lock(fd):
            holder = _read_pid(fd)
            waited = time.monotonic() - start
            if waited < RETRY_S:
                time.sleep(0.005)
                continue
            dead = holder is not None and holder != os.getpid() and not process_alive(holder)
            if not dead or waited >= DEAD_HOLDER_WAIT_S:
                return holder if holder is not None else 0
            if not said:
                on_wait(
                    f"{self.folder}: waiting for process {holder}, which has ended, to release the folder "
                    f"(a process it started still holds its lock; up to {DEAD_HOLDER_WAIT_S:.0f} s)"
                )
                said = True
            time.sleep(0.1)
        return None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            self._fd = None
            self._release()


def lock_holder(folder: str | os.PathLike[str]) -> int | None:
    """The process id written by the folder's current lock holder, or None when nobody holds it.

    It looks by taking the lock for an instant (and then reads no pid: the file's pid is a former
    holder's); a FolderLock that tries in that instant retries (RETRY_S), so it is not refused.
    """
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        if _try_lock(fd):
            return None
        return _read_pid(fd)
    finally:
        os.close(fd)  # closing drops a lock taken just now to look


def take_lock(
    folder: str | os.PathLike[str], doing: str, fail: Callable[[str], Exception], rule: str = ""
) -> FolderLock:
    """The folder's lock, or `fail(message)` raised: the message names the folder, who holds it
    ("this process is already DOING" / "process N is already DOING; RULE wait for it to end, or
    stop it (kill N)") or why the lock file cannot be made."""
    try:
        return FolderLock(folder)
    except FolderBusyError as e:
        if e.holder == os.getpid():
            raise fail(f"{folder}: this process is already {doing}") from None
        who = f"process {e.holder}" if e.holder is not None else "another process"
        stop = f", or stop it (kill {e.holder})" if e.holder is not None and os.name != "nt" else ""
        raise fail(f"{folder}: {who} is already {doing}; {rule}wait for it to end{stop}") from None
    except AlexguiError as e:
        raise fail(str(e)) from None


def _try_lock(fd: int) -> bool:
    try:
        if sys.platform == "win32":  # (sys.platform, not os.name: mypy then checks each branch on its own system)
            import msvcrt

            # Byte 1 is locked, byte 0.. holds the pid: a locked range cannot be read on Windows.
            os.lseek(fd, 1 << 20, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.EDEADLK):
            return False
        if e.errno in _NO_LOCKING:
            return True
        raise
    return True


def _write_pid(fd: int) -> None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    except OSError:
        pass  # the pid only improves a refusal's message


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

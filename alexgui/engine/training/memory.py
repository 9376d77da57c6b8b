"""Keep the memory that tensors free inside the process while training, instead of returning it to
the system at every step.

A CPU training step frees and re-allocates the same large blocks: the fully connected layers'
weight gradients alone are 235 MB (fc6 has 37.7 M weights), SGD's weight decay makes temporaries of
the same size, and a batch's activations add tens of megabytes. glibc's malloc serves blocks from
32 MB up with a fresh mmap and unmaps them on free; and a thread other than the main one (the
window's training thread) gets an arena of its own whose heaps hold at most 64 MB, so every larger
block takes that path. Each step then faults in and zeroes hundreds of megabytes of new pages: on the
2-core development machine, ~150,000 page faults and a third of a second of kernel time per step of
batch 8, a quarter of the step (benchmarks/README.md has the measurement).

Two settings, with glibc's own documented `mallopt`, do what jemalloc or tcmalloc are preloaded for
in PyTorch's CPU performance guide:
- `share_one_heap()`, once at start before other threads exist: every thread allocates from the main
  heap, so a training thread can reuse large blocks as the main thread does.
- `reusing_freed_memory()`, around a training run: large blocks come from the heap instead of their
  own mappings, and freeing the heap's top does not shrink it. When the last run ends, the unused
  memory is handed back (malloc_trim) and glibc's limits return to where its own adaptive thresholds
  settle, so an idle app does not keep a run's high-water mark.

Linux with glibc only; elsewhere, and when the user has tuned malloc themselves (MALLOC_* or
GLIBC_TUNABLES in the environment, or ALEXGUI_SYSTEM_MALLOC=1), nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

# While training: mallopt takes an int, so a free shrinks the heap only when more than 2 GiB lies
# unused at its top.
_TRAINING_TRIM_THRESHOLD = 2**31 - 1
# After training: where glibc's adaptive thresholds end up once a large block has been freed (any
# mallopt call turns the adaptation off, so the end state is set explicitly).
_IDLE_MMAP_THRESHOLD = 32 * 2**20
_IDLE_TRIM_THRESHOLD = 2 * _IDLE_MMAP_THRESHOLD
_IDLE_MMAP_MAX = 65536

_lock = threading.Lock()
_runs = 0


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def user_tuned_malloc(environ: Mapping[str, str] = os.environ) -> bool:
    """True when the environment already chooses how malloc behaves: the user's choice wins."""
    if environ.get("ALEXGUI_SYSTEM_MALLOC", "") not in ("", "0"):
        return True
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return True
    return any(name.startswith("MALLOC_") for name in environ)


def _tunable() -> ctypes.CDLL | None:
    return None if user_tuned_malloc() else _glibc()


def share_one_heap() -> bool:
    """Make threads created from now on allocate from the main heap. Call it first thing, before
    importing torch (which starts a thread): a thread that already has an arena keeps it. Returns
    whether the setting took effect."""
    libc = _tunable()
    return libc is not None and libc.mallopt(_M_ARENA_MAX, 1) == 1


@contextmanager
def reusing_freed_memory() -> Iterator[bool]:
    """Within this block, freed memory stays in the heap for the next step to reuse; when the last
    such block (of any thread) ends, what is unused goes back to the system. Yields whether the
    setting is in effect."""
    global _runs
    libc = _tunable()
    if libc is None:
        yield False
        return
    with _lock:
        _runs += 1
        if _runs == 1:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _TRAINING_TRIM_THRESHOLD)
    try:
        yield True
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                libc.mallopt(_M_MMAP_MAX, _IDLE_MMAP_MAX)
                libc.mallopt(_M_MMAP_THRESHOLD, _IDLE_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, _IDLE_TRIM_THRESHOLD)
                libc.malloc_trim(0)

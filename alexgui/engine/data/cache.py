"""Decoded images kept on disk as one uint8 memory map, so epochs after the first decode nothing.

A cache lives in CACHE_ROOT/decoded/ as two files named by a fingerprint of its inputs:

    <fingerprint>.u8     the images, shape (N, size, size, 3), uint8, C order, no header
    <fingerprint>.json   the sidecar: format, size, paths, labels and the files that could not be used

Old caches are pruned before a new one is built: those unused for MAX_UNUSED_DAYS (opening a cache
marks it used), then the least recently used until all of them fit in MAX_TOTAL_BYTES. A dataset
whose files changed gets a new fingerprint, so its old cache would otherwise stay on disk for good.

The fingerprint covers every file's resolved path, byte size and modification time, the labels,
the image size and FORMAT_VERSION, so changing, adding or removing a file (or how images are
decoded) selects a different cache. The image file is written under a temporary name, fsync'ed and
renamed; the sidecar is written the same way and only after it, so a cache with no sidecar (a
process killed while building) is never trusted, and is simply rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alexgui.engine.store.atomic import (
    atomic_target,
    atomic_write_text,
    remove_stale_temporaries,
)
from alexgui.errors import AlexguiError

# Bump when decoding changes in a way that alters pixels (filter, crop, colour conversion).
FORMAT_VERSION = 1
SUBDIR = "decoded"
MAX_UNUSED_DAYS = 30
MAX_TOTAL_BYTES = 40 * 10**9  # ImageNet's 1.28M training images at 256x256 take about 250 GB: that one is kept alone


class CacheError(AlexguiError):
    """The cache cannot be written (no space, no permission); the message names the folder."""


def fingerprint(paths: Sequence[str], labels: Sequence[int], size: int) -> str:
    """sha256 over (resolved path, byte size, mtime_ns, label) of every file, the size and the format.

    A file that cannot be stat'ed contributes a marker, so it changes the fingerprint when it comes
    back.
    """
    h = hashlib.sha256()
    h.update(f"alexgui-decoded-cache v{FORMAT_VERSION} size={size} n={len(paths)}\n".encode())
    for path, label in zip(paths, labels, strict=True):
        try:
            resolved = str(Path(path).resolve())
            st = os.stat(resolved)
            line = f"{resolved}\0{st.st_size}\0{st.st_mtime_ns}\0{int(label)}\n"
        except OSError as e:
            line = f"{path}\0missing:{e.errno}\0\0{int(label)}\n"
        h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


class DecodedCache:
    """A finished cache, opened read-only. `images[i]` is entry i; entries in `skipped` are zeros."""

    def __init__(self, data_path: Path, paths: list[str], labels: np.ndarray, size: int, skipped: dict[int, str]) -> None:
        self.data_path = data_path
        self.paths = paths
        self.labels = labels
        self.size = size
        self.skipped = skipped
        self.images: np.ndarray = np.memmap(data_path, dtype=np.uint8, mode="r", shape=(len(paths), size, size, 3))

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of the entries holding a decoded image."""
        mask = np.ones(len(self.paths), dtype=bool)
        mask[list(self.skipped)] = False
        return mask

    @classmethod
    def open(
        cls, cache_root: Path, paths: Sequence[str], labels: Sequence[int], size: int, key: str | None = None
    ) -> DecodedCache | None:
        """The finished cache for exactly these files, or None when there is none (or it is damaged).

        key: their fingerprint when the caller has it (it stats every file: worth computing once)."""
        key = key or fingerprint(paths, labels, size)
        folder = Path(cache_root) / SUBDIR
        data_path, sidecar_path = folder / f"{key}.u8", folder / f"{key}.json"
        try:
            meta = json.loads(sidecar_path.read_text(encoding="utf-8"))
            expected_bytes = len(paths) * size * size * 3
            if (
                meta.get("format") != FORMAT_VERSION
                or meta.get("fingerprint") != key
                or meta.get("size") != size
                or meta.get("paths") != list(paths)
                or data_path.stat().st_size != expected_bytes
            ):
                return None
            skipped = {int(i): str(reason) for i, reason in meta.get("skipped", {}).items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        try:
            os.utime(sidecar_path)  # last used now: pruning removes the least recently used first
        except OSError:
            pass  # a read-only cache still works; it is just never pruned
        return cls(data_path, list(paths), np.asarray(labels, dtype=np.int64), size, skipped)


def prune(
    cache_root: Path, keep: str | None = None, incoming_bytes: int = 0,
    max_total: int = MAX_TOTAL_BYTES, max_unused_days: float = MAX_UNUSED_DAYS, now: float | None = None,
) -> list[Path]:
    """Delete caches unused for max_unused_days, then the least recently used until the rest and
    incoming_bytes fit in max_total; never the one named keep. Returns the image files deleted.

    A cache another process still reads stays readable where the OS allows deleting open files (POSIX);
    elsewhere the deletion fails and the cache is left for next time."""
    folder = Path(cache_root) / SUBDIR
    now = time.time() if now is None else now
    entries = []
    for sidecar in folder.glob("*.json"):
        data = sidecar.with_suffix(".u8")
        if sidecar.stem == keep:
            continue
        try:
            used = sidecar.stat().st_mtime
        except OSError:
            continue
        try:
            size = data.stat().st_size
        except OSError:
            size = 0  # a sidecar left without its images: pruned like any other
        entries.append((used, size, data, sidecar))
    entries.sort()  # least recently used first
    total = sum(size for _, size, _, _ in entries) + incoming_bytes
    removed = []
    for used, size, data, sidecar in entries:
        if now - used <= max_unused_days * 86400 and total <= max_total:
            break
        try:
            sidecar.unlink()  # first: a cache without its sidecar is never trusted
            data.unlink(missing_ok=True)
        except OSError:
            continue
        total -= size
        removed.append(data)
    return removed


class CacheWriter:
    """Builds a cache: fill rows with `put`, mark failures with `skip`, then `finish` or `abort`.

    `put` may be called from several threads at once for different rows.
    """

    def __init__(
        self, cache_root: Path, paths: Sequence[str], labels: Sequence[int], size: int, key: str | None = None
    ) -> None:
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.size = size
        self.key = key or fingerprint(self.paths, self.labels, size)
        self.folder = Path(cache_root) / SUBDIR
        self.data_path = self.folder / f"{self.key}.u8"
        self.sidecar_path = self.folder / f"{self.key}.json"
        self.skipped: dict[int, str] = {}
        nbytes = len(self.paths) * size * size * 3
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"{self.folder}: cannot create the decoded-image cache ({e.strerror or e})") from None
        remove_stale_temporaries(self.folder)
        prune(Path(cache_root), keep=self.key, incoming_bytes=nbytes)
        # atomic_target: on a clean exit fsync + rename onto <key>.u8; on an exception, delete.
        self._target = atomic_target(self.data_path)
        tmp = self._target.__enter__()
        try:
            _reserve_space(tmp, nbytes, self.folder)
            self.images: np.memmap = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(len(self.paths), size, size, 3))
        except BaseException as e:
            self._target.__exit__(type(e), e, e.__traceback__)
            raise

    def put(self, index: int, image: np.ndarray) -> None:
        self.images[index] = image

    def skip(self, index: int, reason: str) -> None:
        self.skipped[index] = reason

    def finish(self) -> DecodedCache:
        self.images.flush()
        del self.images
        self._target.__exit__(None, None, None)
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "fingerprint": self.key,
            "size": self.size,
            "count": len(self.paths),
            "paths": self.paths,
            "labels": self.labels,
            "skipped": {str(i): reason for i, reason in sorted(self.skipped.items())},
        }
        atomic_write_text(self.sidecar_path, json.dumps(meta, ensure_ascii=False))
        return DecodedCache(self.data_path, self.paths, np.asarray(self.labels, dtype=np.int64), self.size, self.skipped)

    def abort(self) -> None:
        """Delete the half-built file; nothing under the cache's final names is touched."""
        if hasattr(self, "images"):
            del self.images
            stop = _Aborted()
            self._target.__exit__(_Aborted, stop, None)


class _Aborted(Exception):
    pass


def _reserve_space(path: Path, nbytes: int, folder: Path) -> None:
    """Allocate the whole file up front: running out of disk inside a memory map kills the process
    (SIGBUS) instead of raising, so a lack of space must show up here, as an error."""
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise CacheError(
            f"{folder}: not enough disk space for the decoded-image cache "
            f"(needs {nbytes / 1e9:.1f} GB, {free / 1e9:.1f} GB free); turn the cache off (cache = false) "
            "or point ALEXGUI_CACHE_DIR at a bigger disk"
        )
    with open(path, "r+b") as f:
        if nbytes == 0:
            return
        try:
            os.posix_fallocate(f.fileno(), 0, nbytes)
        except (AttributeError, OSError) as e:
            # Some file systems cannot preallocate; a sparse file of the right size still works.
            if isinstance(e, OSError) and e.errno == 28:  # ENOSPC
                raise CacheError(f"{folder}: not enough disk space for the decoded-image cache") from None
            f.truncate(nbytes)

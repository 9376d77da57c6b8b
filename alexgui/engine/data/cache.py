"""Decoded images kept on disk as one uint8 memory map, so epochs after the first decode nothing.

A cache lives in CACHE_ROOT/decoded/ as two files named by a fingerprint of its inputs:

    <fingerprint>.u8     the images, shape (N, size, size, 3), uint8, C order, no header
    <fingerprint>.json   the sidecar: format, size, paths, labels and the files that could not be used

Old caches are pruned before a new one is built: those unused for MAX_UNUSED_DAYS (opening a cache
marks it used), then the least recently used until all of them fit in MAX_TOTAL_BYTES. A dataset
whose files changed gets a new fingerprint, so its old cache would otherwise stay on disk for good.

The fingerprint covers every file's resolved path, byte size, modification time and a digest of its
content, the labels, the image size and FORMAT_VERSION, so changing, adding or removing a file (or
how images are decoded) selects a different cache. The content digest (`content_digest`) is a
blake2b of the first, middle and last 64 KiB of the file, the whole file when it is 192 KiB or less:
an edit that keeps the size and puts the old modification time back is still noticed (wholly for
files up to 192 KiB, which is most photos at ImageNet's sizes; in the sampled parts beyond). Its cost
is reading those bytes once per start, in threads: on imagenette-224-mini (3,100 files, 32 MB, page
cache warm, a busy 2-core machine) the key took 1.0-1.9 s where size and time alone took 0.9 s, and
decoding the files takes about 23 s of CPU; larger files are sampled so that a big dataset is not
read in full on every start.

The image file is written under a temporary name, fsync'ed and renamed; the sidecar is written the
same way and only after it, so a cache with no sidecar (a process killed while building) is never
trusted, and is simply rebuilt; pruning finds it all the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from alexgui.engine.data.imageio import open_regular
from alexgui.engine.store.atomic import (
    atomic_target,
    atomic_write_text,
    is_temporary,
    remove_stale_temporaries,
)
from alexgui.errors import AlexguiError

# Bump when decoding changes in a way that alters pixels (filter, crop, colour conversion).
FORMAT_VERSION = 1
SUBDIR = "decoded"
MAX_UNUSED_DAYS = 30
SAMPLE_BYTES = 64 * 1024  # per part of a file read for its content digest
ORPHAN_GRACE_SECONDS = 3600  # an image file without its sidecar this old is no build in progress
KEY_SLICE = 4096  # files handed to the key's threads at a time (enough to keep 32 threads busy)
MAX_TOTAL_BYTES = 40 * 10**9  # ImageNet's 1.28M training images at 256x256 take about 250 GB: that one is kept alone


class CacheError(AlexguiError):
    """The cache cannot be written (no space, no permission); the message names the folder."""


def fingerprint(paths: Sequence[str], labels: Sequence[int], size: int) -> str:
    """sha256 over (resolved path, byte size, mtime_ns, content digest, label) of every file, the
    size and the format.

    A file that cannot be stat'ed or read contributes a marker, so it changes the fingerprint when
    it comes back.
    """
    if len(paths) != len(labels):
        raise ValueError(f"fingerprint: {len(paths)} paths but {len(labels)} labels")
    h = hashlib.sha256()
    h.update(f"alexgui-decoded-cache v{FORMAT_VERSION} key2 size={size} n={len(paths)}\n".encode())
    # Reading the samples waits on the disk, not the CPU (blake2b releases the GIL): threads overlap it.
    # Executor.map submits a future (~2 KB) per item at once, chunksize or not: a slice at a time keeps
    # ImageNet's 1.28M files from holding gigabytes of pending futures.
    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1)), thread_name_prefix="alexgui-key") as pool:
        for start in range(0, len(paths), KEY_SLICE):
            stamps = pool.map(_file_key, paths[start : start + KEY_SLICE])
            for stamp, label in zip(stamps, labels[start : start + KEY_SLICE]):
                h.update(f"{stamp}\0{int(label)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _file_key(path: str) -> str:
    try:
        resolved = os.path.realpath(path)
        with open_regular(resolved) as f:  # a FIFO or device is refused, never opened
            st = os.fstat(f.fileno())
            return f"{resolved}\0{st.st_size}\0{st.st_mtime_ns}\0{_digest(f, st.st_size, SAMPLE_BYTES)}"
    except (OSError, AlexguiError) as e:  # gone, unreadable, or not a regular file
        return f"{path}\0missing:{getattr(e, 'errno', None) or type(e).__name__}"


def content_digest(path: str | os.PathLike[str], sample: int = SAMPLE_BYTES) -> str:
    """blake2b (16 bytes, hex) of the file's size and its first, middle and last `sample` bytes
    (the whole file when it is no longer than 3 * sample). See the module docstring for the why."""
    with open_regular(path) as f:
        return _digest(f, os.fstat(f.fileno()).st_size, sample)


def _digest(f: BinaryIO, size: int, sample: int) -> str:
    h = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    if size <= 3 * sample:
        h.update(f.read())
    else:
        for offset in (0, (size - sample) // 2, size - sample):
            f.seek(offset)
            h.update(f.read(sample))
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
        # Half-written files of builds whose process died: this start owns the folder's cleaning
        # (a temporary whose writer still runs is kept).
        remove_stale_temporaries(folder)
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

    Every cache file is found, whatever its state: a cache with both files, a sidecar alone, and an
    image file alone (a build killed between its two renames, or a sidecar that could not be
    written), which is never trusted and goes once it is ORPHAN_GRACE_SECONDS old (younger, it may be
    a build finishing right now).

    A cache another process still reads stays readable where the OS allows deleting open files (POSIX);
    elsewhere the deletion fails and the cache is left for next time."""
    folder = Path(cache_root) / SUBDIR
    now = time.time() if now is None else now
    try:
        names = {p.stem for p in folder.iterdir() if p.suffix in (".u8", ".json") and not is_temporary(p)}
    except OSError:
        return []
    entries = []
    orphans = []
    for stem in sorted(names - {keep}):
        data, sidecar = folder / f"{stem}.u8", folder / f"{stem}.json"
        size = _size(data)
        try:
            used = sidecar.stat().st_mtime
        except OSError:
            try:
                if now - data.stat().st_mtime > ORPHAN_GRACE_SECONDS:
                    orphans.append(data)
            except OSError:
                pass
            continue
        entries.append((used, size, data, sidecar))
    removed = []
    for data in orphans:
        try:
            data.unlink()
            removed.append(data)
        except OSError:
            pass
    entries.sort()  # least recently used first
    total = sum(size for _, size, _, _ in entries) + incoming_bytes
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # a sidecar left without its images: pruned like any other


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
        # ASCII escapes: a file name that is not valid UTF-8 (surrogate escapes in Python) is kept
        # exactly as \udcXX and read back the same, where a UTF-8 sidecar could not be written at all.
        atomic_write_text(self.sidecar_path, json.dumps(meta, ensure_ascii=True))
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

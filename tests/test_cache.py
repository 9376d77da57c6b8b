"""The decoded-image memory map: reuse without decoding, invalidation, atomic building."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexgui.config import DataConfig
from alexgui.engine.data import dataset
from alexgui.engine.data.cache import SUBDIR, CacheWriter, DecodedCache, fingerprint
from alexgui.engine.data.dataset import prepare_dataset


def _dataset(root: Path) -> Path:
    for name, colour in (("cats", (200, 0, 0)), ("dogs", (0, 200, 0))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40 + 10 * i, 30), colour).save(root / name / f"{i}.png")
    (root / "cats" / "broken.jpg").write_text("not a jpeg")
    return root


def _cfg(root: Path) -> DataConfig:
    return DataConfig(data=str(root), resize=24, cache=True, val_fraction=0.34)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of the pre-flight's decoder, by path."""
    seen: list[str] = []
    real = dataset.load_256

    def counting(path: str, size: int = 256) -> np.ndarray:
        seen.append(str(path))
        return real(path, size)

    monkeypatch.setattr(dataset, "load_256", counting)
    return seen


def _cache_files(cache_root: Path) -> list[str]:
    return sorted(p.name for p in (cache_root / SUBDIR).iterdir())


def test_second_prepare_reuses_the_cache_without_decoding(tmp_path: Path, decodes: list[str]) -> None:
    root, cache_root = _dataset(tmp_path / "data"), tmp_path / "cache"
    first = prepare_dataset(_cfg(root), cache_root)
    assert len(decodes) == 7
    stages: list[tuple[str, int, int]] = []
    second = prepare_dataset(_cfg(root), cache_root, progress=lambda *a: stages.append(a))
    assert len(decodes) == 7, "the second preparation decoded again"
    assert ("reading cache", 7, 7) in stages
    assert [(s.path, s.reason) for s in second.skipped] == [(s.path, s.reason) for s in first.skipped]
    assert [Path(s.path).name for s in second.skipped] == ["broken.jpg"]
    assert second.cache_file == first.cache_file
    for a, b in ((first.train, second.train), (first.val, second.val)):
        assert a.paths == b.paths
        assert np.array_equal(a.labels, b.labels)
        for i in range(len(a)):
            assert np.array_equal(a.get(i), b.get(i))
    # Training from the cache decodes nothing either.
    list(second.train.batches(np.arange(len(second.train)), 2))
    assert len(decodes) == 7


def test_cached_pixels_equal_fresh_decoding(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    prepared = prepare_dataset(_cfg(root), tmp_path / "cache")
    for i, path in enumerate(prepared.train.paths):
        assert np.array_equal(prepared.train.get(i), dataset.load_256(path, 24))


def test_changing_a_file_rebuilds(tmp_path: Path, decodes: list[str]) -> None:
    root, cache_root = _dataset(tmp_path / "data"), tmp_path / "cache"
    first = prepare_dataset(_cfg(root), cache_root)
    changed = root / "dogs" / "1.png"
    Image.new("RGB", (50, 30), (0, 0, 255)).save(changed)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    decodes.clear()
    second = prepare_dataset(_cfg(root), cache_root)
    assert len(decodes) == 7
    assert second.cache_file != first.cache_file
    blues = [i for i, p in enumerate(second.train.paths + second.val.paths) if p == str(changed)]
    assert len(blues) == 1
    images = second.train if str(changed) in second.train.paths else second.val
    assert tuple(images.get(images.paths.index(str(changed)))[12, 12]) == (0, 0, 255)


def test_fingerprint_covers_size_mtime_labels_and_image_size(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(path)
    base = fingerprint([str(path)], [0], 256)
    assert fingerprint([str(path)], [0], 256) == base
    assert fingerprint([str(path)], [1], 256) != base
    assert fingerprint([str(path)], [0], 128) != base
    os.utime(path, ns=(0, 123))
    assert fingerprint([str(path)], [0], 256) != base
    missing = fingerprint([str(tmp_path / "gone.png")], [0], 256)
    assert missing != base


def test_the_key_hands_files_to_its_threads_a_slice_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from alexgui.engine.data import cache

    paths = []
    for i in range(35):
        (tmp_path / f"{i}.bin").write_bytes(bytes([i]) * 10)
        paths.append(str(tmp_path / f"{i}.bin"))
    labels = [i % 3 for i in range(35)]
    whole = fingerprint(paths, labels, 64)
    pending: list[int] = []  # futures submitted and not yet consumed, whenever one is submitted

    class SpyPool(ThreadPoolExecutor):
        submitted = consumed = 0

        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            SpyPool.submitted += 1
            pending.append(SpyPool.submitted - SpyPool.consumed)
            return super().submit(fn, *args, **kwargs)

        def map(self, fn, *iterables, timeout=None, chunksize=1):  # type: ignore[no-untyped-def]
            for result in super().map(fn, *iterables, timeout=timeout, chunksize=chunksize):
                SpyPool.consumed += 1
                yield result

    monkeypatch.setattr(cache, "ThreadPoolExecutor", SpyPool)
    monkeypatch.setattr(cache, "KEY_SLICE", 10)
    assert fingerprint(paths, labels, 64) == whole  # the same key, files in the same order
    assert len(pending) == 35 and max(pending) <= 10


def test_cache_without_its_sidecar_is_ignored_and_rebuilt(tmp_path: Path, decodes: list[str]) -> None:
    root, cache_root = _dataset(tmp_path / "data"), tmp_path / "cache"
    prepared = prepare_dataset(_cfg(root), cache_root)
    assert prepared.cache_file is not None
    sidecar = prepared.cache_file.with_suffix(".json")
    sidecar.unlink()  # as if the process died between the two renames
    decodes.clear()
    prepare_dataset(_cfg(root), cache_root)
    assert len(decodes) == 7
    assert sidecar.exists()


@pytest.mark.parametrize("damage", ["truncate data", "garbage sidecar", "other paths"])
def test_damaged_cache_is_rebuilt(tmp_path: Path, decodes: list[str], damage: str) -> None:
    root, cache_root = _dataset(tmp_path / "data"), tmp_path / "cache"
    prepared = prepare_dataset(_cfg(root), cache_root)
    assert prepared.cache_file is not None
    sidecar = prepared.cache_file.with_suffix(".json")
    if damage == "truncate data":
        with open(prepared.cache_file, "r+b") as f:
            f.truncate(100)
    elif damage == "garbage sidecar":
        sidecar.write_text("{not json")
    else:
        meta = json.loads(sidecar.read_text())
        meta["paths"] = meta["paths"][::-1]
        sidecar.write_text(json.dumps(meta))
    decodes.clear()
    again = prepare_dataset(_cfg(root), cache_root)
    assert len(decodes) == 7
    assert tuple(again.train.get(0)[0, 0]) in ((200, 0, 0), (0, 200, 0))


def test_half_written_temporary_from_a_dead_process_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / SUBDIR
    folder.mkdir(parents=True)
    dead_pid = 2**22 + 12345  # above Linux's default pid_max: no such process
    stale = folder / f".abc.u8.tmp-{dead_pid}-0123abcd"
    stale.write_bytes(b"\0" * 64)
    root = _dataset(tmp_path / "data")
    prepare_dataset(_cfg(root), tmp_path / "cache")
    assert not stale.exists()
    names = _cache_files(tmp_path / "cache")
    assert len(names) == 2 and {Path(n).suffix for n in names} == {".u8", ".json"}


def test_writer_abort_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(path)
    writer = CacheWriter(tmp_path / "cache", [str(path)], [0], 8)
    writer.put(0, np.ones((8, 8, 3), np.uint8))
    writer.abort()
    assert _cache_files(tmp_path / "cache") == []
    assert DecodedCache.open(tmp_path / "cache", [str(path)], [0], 8) is None


def test_writer_finish_then_open(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (4, 4)).save(paths[-1])
    writer = CacheWriter(tmp_path / "cache", paths, [0, 1, 1], 8)
    writer.put(0, np.full((8, 8, 3), 7, np.uint8))
    writer.skip(1, "empty file")
    writer.put(2, np.full((8, 8, 3), 9, np.uint8))
    writer.finish()
    cache = DecodedCache.open(tmp_path / "cache", paths, [0, 1, 1], 8)
    assert cache is not None
    assert cache.skipped == {1: "empty file"}
    assert cache.valid.tolist() == [True, False, True]
    assert cache.images.shape == (3, 8, 8, 3)
    assert int(cache.images[0].max()) == 7 and int(cache.images[2].min()) == 9
    meta = json.loads(cache.data_path.with_suffix(".json").read_text())
    assert meta["labels"] == [0, 1, 1] and meta["paths"] == paths and meta["size"] == 8


def _finished_cache(root: Path, folder: Path, name: str) -> Path:
    """A finished 1-image cache (16x16: 768 bytes)."""
    path = folder / f"{name}.png"
    Image.new("RGB", (4, 4)).save(path)
    writer = CacheWriter(root, [str(path)], [0], 16)
    writer.put(0, np.zeros((16, 16, 3), np.uint8))
    return writer.finish().data_path


def _last_used(data: Path, when: float) -> None:
    os.utime(data.with_suffix(".json"), (when, when))


def test_old_and_least_recently_used_caches_are_pruned(tmp_path: Path) -> None:
    from alexgui.engine.data.cache import prune

    root, now, day = tmp_path / "cache", time.time(), 86400.0
    stale, old, recent, kept = (_finished_cache(root, tmp_path, name) for name in ("stale", "old", "recent", "kept"))
    for data, age in ((stale, 40), (old, 3), (recent, 1), (kept, 50)):
        _last_used(data, now - age * day)
    # Unused for over 30 days goes; `keep` (the cache about to be rebuilt or used) never does.
    assert prune(root, keep=kept.stem, now=now) == [stale]
    assert not stale.with_suffix(".json").exists() and kept.exists()
    # Over the size budget: the least recently used goes first, until the new one fits.
    assert prune(root, keep=kept.stem, incoming_bytes=768, max_total=2 * 768, now=now) == [old]
    assert recent.exists() and kept.exists()
    # Building a new cache prunes too: "kept" has not been used for 50 days.
    _finished_cache(root, tmp_path, "new")
    assert not kept.exists() and recent.exists()


def test_opening_a_cache_marks_it_used(tmp_path: Path) -> None:
    data = _finished_cache(tmp_path / "cache", tmp_path, "a")
    _last_used(data, 1_000.0)
    assert DecodedCache.open(tmp_path / "cache", [str(tmp_path / "a.png")], [0], 16) is not None
    assert data.with_suffix(".json").stat().st_mtime > time.time() - 60

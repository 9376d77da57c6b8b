"""Image folders as training data: class folders, the train/val split, the pre-flight, batches.

Layouts (class names are the sorted folder names; files are found recursively inside a class folder;
names starting with "." are ignored, everything else is a candidate that the pre-flight accepts or
excludes with a reason):

    ROOT/train/<class>/...  and  ROOT/val/<class>/...     val/ optional: without it, a seeded split
    ROOT/<class>/...                                       a seeded split, stratified per class

The pre-flight decodes every file once (threads: Pillow releases the GIL while decoding), excludes
the ones that cannot be used as `Skipped(path, reason)`, and with the cache on writes the decoded
images into the memory-map cache in the same pass, so the first epoch decodes nothing again.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from alexgui.config import DataConfig
from alexgui.engine.data.cache import CacheError, CacheWriter, DecodedCache, fingerprint
from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.errors import AlexguiError, Cancelled

ProgressFn = Callable[[str, int, int], None]


class DatasetError(AlexguiError):
    """A dataset folder that cannot be trained on; the message names the folder and the problem."""


@dataclass
class Sample:
    path: str
    label: int


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class DatasetIndex:
    root: Path
    class_names: list[str]
    train: list[Sample]
    val: list[Sample]


# -- scanning --------------------------------------------------------------------------------


def scan_folder(root: str | os.PathLike[str], val_fraction: float, split_seed: int) -> DatasetIndex:
    """Find the classes and files under `root` and split them into train and val."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a folder of class folders")
    root = root.resolve()
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir():
        train_files = _class_files(train_dir)
        _require_classes(train_files, train_dir)
        if val_dir.is_dir():
            val_files = _class_files(val_dir)
            if not val_files:
                raise DatasetError(
                    f"{val_dir}: no class folders with files (remove val/ to split train/ automatically)"
                )
            unknown = sorted(set(val_files) - set(train_files))
            if unknown:
                raise DatasetError(f"{val_dir / unknown[0]}: class {unknown[0]!r} has no folder in {train_dir}")
        else:
            train_files, val_files = _split(train_files, val_fraction, split_seed, root)
    else:
        if val_dir.is_dir():
            raise DatasetError(f"{root}: has val/ but no train/ folder; add train/ or use plain class folders")
        all_files = _class_files(root)
        _require_classes(all_files, root)
        train_files, val_files = _split(all_files, val_fraction, split_seed, root)
    class_names = sorted(train_files)
    label = {name: i for i, name in enumerate(class_names)}
    train = [Sample(p, label[c]) for c in class_names for p in train_files[c]]
    val = [Sample(p, label[c]) for c in sorted(val_files) for p in val_files[c]]
    return DatasetIndex(root=root, class_names=class_names, train=train, val=val)


def _class_files(folder: Path) -> dict[str, list[str]]:
    """{class name: sorted file paths} for the visible sub-folders of `folder` that hold files."""
    classes: dict[str, list[str]] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise DatasetError(f"{folder}: cannot list the folder ({e.strerror or e})") from None
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        files = _files_below(entry)
        if files:
            classes[entry.name] = files
    return classes


def _files_below(folder: Path) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(os.path.join(dirpath, name) for name in filenames if not name.startswith("."))
    return sorted(found)


def _require_classes(classes: dict[str, list[str]], folder: Path) -> None:
    if not classes:
        raise DatasetError(
            f"{folder}: no class folders with files (expected {folder}/<class>/<image files>, "
            "or train/<class>/... and val/<class>/...)"
        )
    if len(classes) == 1:
        (only,) = classes
        raise DatasetError(f"needs at least 2 classes; found only {only!r} in {folder}")


def _split(
    classes: dict[str, list[str]], val_fraction: float, split_seed: int, root: Path
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Stratified split: each class holds out round(n * val_fraction) files, at least 1 when it has 2.

    Each class's shuffle is seeded by (split_seed, class name), so adding a class or a file to one
    class leaves the other classes' splits unchanged.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(
            f"{root}: val_fraction must be between 0 and 1 (exclusive) to split off a validation set, not {val_fraction}"
        )
    train: dict[str, list[str]] = {}
    val: dict[str, list[str]] = {}
    for name, files in classes.items():
        n = len(files)
        n_val = 0 if n < 2 else min(n - 1, max(1, round(n * val_fraction)))
        order = list(files)
        random.Random(f"alexgui-split:{split_seed}:{name}").shuffle(order)
        if n_val:
            val[name] = sorted(order[:n_val])
        train[name] = sorted(order[n_val:])
    return train, val


# -- images as arrays and batches ------------------------------------------------------------


class ImageSet:
    """Images already vetted by the pre-flight, each with its label.

    With a cache, pixels come from the memory map (no decoding). Without one, files are decoded on
    the fly; a file that can no longer be decoded (deleted or damaged after the pre-flight) is
    dropped from its batch and recorded in `failed` instead of stopping training, so such a batch is
    smaller than the rest, and a batch whose files all failed is not yielded at all.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int] | np.ndarray,
        size: int = 256,
        cache: DecodedCache | None = None,
        rows: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(self.labels) != len(self.paths):
            raise ValueError(f"ImageSet: {len(self.paths)} paths but {len(self.labels)} labels")
        self.size = size
        self.cache = cache
        self.rows = np.asarray(rows if rows is not None else np.arange(len(self.paths)), dtype=np.int64)
        self.failed: list[Skipped] = []  # files that failed to decode after the pre-flight
        self._failed_paths: set[str] = set()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def cached(self) -> bool:
        return self.cache is not None

    def get(self, i: int) -> np.ndarray:
        """Image i as (size, size, 3) uint8; raises ImageError if it has to be decoded and cannot be."""
        if self.cache is not None:
            return np.array(self.cache.images[self.rows[i]])
        return load_256(self.paths[i], self.size)

    def batches(
        self, indices: np.ndarray | Sequence[int], batch_size: int, workers: int = 0, pin_memory: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 (B, size, size, 3), int64 (B,)) CPU tensors over `indices` in the order given.

        `workers` decoding processes are used only without a cache. Pinned memory is used only
        when asked and CUDA is available.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        order = np.asarray(indices, dtype=np.int64).reshape(-1)
        pin = pin_memory and torch.cuda.is_available()
        if self.cache is not None:
            return self._cached_batches(order, batch_size, pin)
        return self._decoded_batches(order, batch_size, workers, pin)

    def _cached_batches(self, order: np.ndarray, batch_size: int, pin: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.cache is not None
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            # One fancy-index copy out of the memory map per batch: no per-image Python work.
            pixels = np.asarray(self.cache.images[self.rows[chosen]]).view(np.ndarray)
            images = torch.from_numpy(pixels)
            labels = torch.from_numpy(self.labels[chosen].copy())
            if pin:
                images, labels = images.pin_memory(), labels.pin_memory()
            yield images, labels

    def _decoded_batches(
        self, order: np.ndarray, batch_size: int, workers: int, pin: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        chunks = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        if not chunks:
            return
        loader = DataLoader(
            _DecodingDataset(self.paths, self.labels, self.size),
            batch_sampler=chunks,
            num_workers=max(0, workers),
            collate_fn=_collate_dropping_failures,
            pin_memory=pin,
        )
        for images, labels, failures in loader:
            for path, reason in failures:
                if path not in self._failed_paths:  # report a file once, not once per epoch
                    self._failed_paths.add(path)
                    self.failed.append(Skipped(path, reason))
            if len(labels):
                yield images, labels


class _DecodingDataset(Dataset):
    # Holds only paths and labels: it is pickled into each DataLoader worker.
    def __init__(self, paths: list[str], labels: np.ndarray, size: int) -> None:
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, int, str | None, str]:
        path = self.paths[i]
        try:
            return load_256(path, self.size), int(self.labels[i]), None, path
        except ImageError as e:
            return None, int(self.labels[i]), e.reason, path


def _collate_dropping_failures(
    items: list[tuple[np.ndarray | None, int, str | None, str]],
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Stack the images that decoded; report (path, reason) for those that did not."""
    good = [(image, label) for image, label, _reason, _path in items if image is not None]
    failures = [(path, reason) for image, _label, reason, path in items if image is None and reason is not None]
    if good:
        images = torch.from_numpy(np.stack([image for image, _ in good]))
        labels = torch.tensor([label for _, label in good], dtype=torch.int64)
    else:
        images = torch.empty((0, 0, 0, 3), dtype=torch.uint8)
        labels = torch.empty((0,), dtype=torch.int64)
    return images, labels, failures


# -- the pre-flight --------------------------------------------------------------------------


@dataclass
class PreparedData:
    class_names: list[str]
    train: ImageSet
    val: ImageSet
    skipped: list[Skipped] = field(default_factory=list)
    root: Path | None = None
    cache_file: Path | None = None  # the memory map the images come from, when cached


def prepare_dataset(
    cfg: DataConfig,
    cache_root: Path | None,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
) -> PreparedData:
    """Scan cfg.data, pre-flight every file and (with cfg.cache) fill the decoded-image cache.

    cache_root None means the user's cache folder (alexgui.paths.cache_dir()). Raises DatasetError
    when the folder cannot be used (also when the pre-flight leaves fewer than 2 classes with
    training images, or no validation images), Cancelled when `stop` is set.
    """
    from alexgui.paths import cache_dir

    cache_root = Path(cache_root) if cache_root is not None else cache_dir()
    report = progress or (lambda stage, done, total: None)
    root: str | Path = cfg.data
    if cfg.data == "demo":
        from alexgui.engine.data.demo import ensure_demo_dataset

        root = ensure_demo_dataset(cache_root)
    report("scanning", 0, 1)
    index = scan_folder(root, cfg.val_fraction, cfg.split_seed)
    report("scanning", 1, 1)
    _check_stop(stop)

    samples = index.train + index.val
    paths = [s.path for s in samples]
    labels = [s.label for s in samples]
    size = cfg.resize
    cache: DecodedCache | None = None
    if cfg.cache:
        key = fingerprint(paths, labels, size)  # stats every file: once, for both the lookup and the build
        cache = DecodedCache.open(cache_root, paths, labels, size, key)
        if cache is not None:
            report("reading cache", len(paths), len(paths))
            reasons = cache.skipped
        else:
            cache, reasons = _build_cache(cache_root, paths, labels, size, key, report, stop)
    else:
        reasons = _preflight(paths, size, None, report, stop)

    skipped = [Skipped(paths[i], reason) for i, reason in sorted(reasons.items())]
    n_train = len(index.train)
    train_rows = [i for i in range(n_train) if i not in reasons]
    val_rows = [i for i in range(n_train, len(samples)) if i not in reasons]

    def image_set(rows: list[int]) -> ImageSet:
        return ImageSet([paths[i] for i in rows], [labels[i] for i in rows], size, cache, rows if cache else None)

    train, val = image_set(train_rows), image_set(val_rows)
    _require_usable(index, train, val, skipped)
    return PreparedData(
        class_names=index.class_names,
        train=train,
        val=val,
        skipped=skipped,
        root=index.root,
        cache_file=cache.data_path if cache else None,
    )


def _build_cache(
    cache_root: Path,
    paths: list[str],
    labels: list[int],
    size: int,
    key: str,
    report: ProgressFn,
    stop: threading.Event | None,
) -> tuple[DecodedCache, dict[int, str]]:
    try:
        writer = CacheWriter(cache_root, paths, labels, size, key)
    except CacheError as e:
        raise DatasetError(str(e)) from None
    try:
        reasons = _preflight(paths, size, writer, report, stop)
    except BaseException:
        writer.abort()
        raise
    return writer.finish(), reasons


def _preflight(
    paths: list[str], size: int, writer: CacheWriter | None, report: ProgressFn, stop: threading.Event | None
) -> dict[int, str]:
    """Decode every file once; {index: reason} for those that cannot be used.

    At most a few decodes per thread are in flight, so a stop request is honoured within a few
    images' time and a million files do not become a million queued futures.
    """
    total = len(paths)
    threads = max(1, os.cpu_count() or 1)
    reasons: dict[int, str] = {}
    every = max(1, total // 100)
    done = 0
    report("decoding", 0, total)

    def work(i: int) -> None:
        try:
            image = load_256(paths[i], size)
        except Exception as e:  # noqa: BLE001 - one odd file must not end the pre-flight
            reason = e.reason if isinstance(e, ImageError) else f"could not decode ({type(e).__name__}: {e})"
            reasons[i] = reason
            if writer is not None:
                writer.skip(i, reason)
            return
        if writer is not None:
            writer.put(i, image)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="alexgui-preflight") as pool:
        pending: set[Future[None]] = set()
        next_index = 0
        try:
            while next_index < total or pending:
                _check_stop(stop)
                while next_index < total and len(pending) < threads * 4:
                    pending.add(pool.submit(work, next_index))
                    next_index += 1
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
                    done += 1
                    if done % every == 0 or done == total:
                        report("decoding", done, total)
        finally:
            for future in pending:
                future.cancel()
    return reasons


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Cancelled("stopped while preparing the data")


def _require_usable(index: DatasetIndex, train: ImageSet, val: ImageSet, skipped: list[Skipped]) -> None:
    why = f" ({len(skipped)} file(s) could not be used)" if skipped else ""
    classes_with_images = len(set(train.labels.tolist()))
    if classes_with_images < 2:
        raise DatasetError(
            f"{index.root}: needs training images in at least 2 classes; "
            f"{classes_with_images} class(es) have usable images{why}"
        )
    if len(val) == 0:
        raise DatasetError(f"{index.root}: no usable validation images{why}")

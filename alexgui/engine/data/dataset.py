"""Image folders as training data: class folders, the train/val split, the pre-flight, batches.

Layouts (class names are the sorted folder names; files are found recursively inside a class folder
by walk.py, which skips special files, link loops and links out of the root with a reason; names
starting with "." are ignored, every other regular file is a candidate that the pre-flight accepts
or excludes with a reason):

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
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from alexgui.config import DataConfig
from alexgui.engine.data.cache import CacheError, CacheWriter, DecodedCache, fingerprint
from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.data.imageset import ImageSet
from alexgui.engine.data.walk import DatasetError, FolderWalk, Skipped, Stamp, display_path
from alexgui.errors import Cancelled

__all__ = ["DatasetError", "DatasetIndex", "ImageSet", "PreparedData", "Sample", "Skipped", "prepare_dataset", "scan_folder"]

ProgressFn = Callable[[str, int, int], None]


@dataclass
class Sample:
    path: str
    label: int


@dataclass
class DatasetIndex:
    root: Path
    class_names: list[str]
    train: list[Sample]
    val: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)  # what the walk would not take, with reasons
    stamps: dict[str, Stamp] = field(default_factory=dict)  # path -> (size, mtime_ns, inode) when found


# -- scanning --------------------------------------------------------------------------------


def scan_folder(
    root: str | os.PathLike[str], val_fraction: float, split_seed: int, links_out: bool = False
) -> DatasetIndex:
    """Find the classes and files under `root` and split them into train and val.

    The walk (walk.py) skips special files, link loops and (unless `links_out`) links out of root,
    each with a reason in `DatasetIndex.skipped`.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a folder of class folders")
    root = root.resolve()
    walk = FolderWalk(root, links_out=links_out)
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir():
        # Every class folder is claimed before any is walked: see FolderWalk.
        train_classes = walk.class_folders(train_dir)
        val_classes = walk.class_folders(val_dir) if val_dir.is_dir() else None
        train_files = _class_files(walk, train_classes)
        _require_classes(train_files, train_dir)
        if val_classes is not None:
            val_files = _class_files(walk, val_classes)
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
        all_files = _class_files(walk, walk.class_folders(root))
        _require_classes(all_files, root)
        train_files, val_files = _split(all_files, val_fraction, split_seed, root)
    class_names = sorted(train_files)
    label = {name: i for i, name in enumerate(class_names)}
    train = [Sample(p, label[c]) for c in class_names for p in train_files[c]]
    val = [Sample(p, label[c]) for c in sorted(val_files) for p in val_files[c]]
    return DatasetIndex(
        root=root, class_names=class_names, train=train, val=val, skipped=walk.skipped, stamps=walk.stamps
    )


def _class_files(walk: FolderWalk, classes: list[tuple[str, Path]]) -> dict[str, list[str]]:
    """{class name: sorted file paths} for the class folders that hold files."""
    found: dict[str, list[str]] = {}
    for name, folder in classes:
        skipped_before = len(walk.skipped)
        files = walk.files_below(folder)
        if files:
            found[name] = files
        elif len(walk.skipped) == skipped_before:  # truly empty (not all skipped, which says why already):
            # said, not dropped in silence: an empty class folder is often a copy that went wrong
            walk.skip(str(folder), "no files in this class folder: not a class (add images, or remove the folder)")
    return found


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
    index = scan_folder(root, cfg.val_fraction, cfg.split_seed, links_out=cfg.follow_links)
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

    skipped = index.skipped + [Skipped(display_path(paths[i]), reason) for i, reason in sorted(reasons.items())]
    n_train = len(index.train)
    train_rows = [i for i in range(n_train) if i not in reasons]
    val_rows = [i for i in range(n_train, len(samples)) if i not in reasons]

    def image_set(rows: list[int]) -> ImageSet:
        return ImageSet(
            [paths[i] for i in rows], [labels[i] for i in rows], size, cache, rows if cache else None,
            stamps=[index.stamps.get(paths[i]) for i in rows],
        )

    train, val = image_set(train_rows), image_set(val_rows)
    train.lockstep = True  # its batches are the training steps, which every rank takes together
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

"""Nearest-neighbour image retrieval on the last hidden layer (paper, Figure 4 right).

A gallery index is a folder:

    INDEX/index.json              format, image paths, their sizes and mtimes, the model (its path
                                  absolute, and relative to INDEX as a fallback, so the index works
                                  from any folder and after moving both together), its fingerprint,
                                  skipped files with reasons, the feature file's name and dtype
    INDEX/features-PID-XXXX.npy   (N, 4096) fc7 features after ReLU, float16 (default) or float32

The .npy file is written first under a fresh name (with the writer's process id), then index.json is
replaced atomically to point at it, so a reader always sees a complete index; a feature file that no
index.json names and whose writer is dead (a killed build) is removed by the next save there, as are
temporaries. An index.json that alexgui did not write, or a folder holding other files, is never
written to. Loading uses np.load(allow_pickle=False) and JSON: nothing in an index can run code.

Search is exact (gallery.py): squared Euclidean distances from one matrix product per gallery chunk
with precomputed gallery norms, then argpartition. Features are searched in float32 whatever the
storage dtype (float16 halves the file; it is widened once when the index is loaded), so results
equal a brute-force numpy search over the stored values. Saving and loading are in index_files.py;
this module builds indexes and embeds queries, and is where callers import all of it from.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from alexgui.engine.data.imageio import ImageError
from alexgui.engine.inference.gallery import (
    FLOAT16_MAX,
    INDEX_FORMAT,
    INDEX_JSON,
    SEARCH_CHUNK,
    GalleryIndex,
    RetrievalError,
    file_stamp,
    nearest,
    search,
    squared_norms,
)
from alexgui.engine.inference.index_files import (
    check_index_folder,
    load_index,
    model_source,
    save_index,
    stale_reasons,
)
from alexgui.engine.inference.predict import IMAGE_SUFFIXES, Predictor, list_images
from alexgui.errors import Cancelled

__all__ = [
    "INDEX_FORMAT", "INDEX_JSON", "SEARCH_CHUNK", "Cancelled", "GalleryIndex", "RetrievalError", "build_index",
    "check_index_folder",
    "load_index", "model_source", "nearest", "query_features", "save_index", "search", "squared_norms",
    "stale_reasons",
]

Progress = Callable[[int, int], None]


def build_index(
    predictor: Predictor,
    images: str | os.PathLike[str],
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    batch_size: int = 16,
    dtype: str = "float16",
) -> GalleryIndex:
    """fc7 features of every image below the folder `images`; unreadable files are skipped with a
    reason. Raises Cancelled when `stop` is set, RetrievalError when no image could be indexed."""
    if dtype not in ("float16", "float32"):
        raise RetrievalError(f"index dtype must be float16 or float32, got {dtype!r}")
    root = Path(images).resolve()
    if not root.is_dir():
        raise RetrievalError(f"{root}: not a folder of images")
    files = list_images(root)
    if not files:
        raise RetrievalError(f"{root}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    stamps = {str(p): file_stamp(p) for p in files}
    kept: list[str] = []
    chunks: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    batch: list[np.ndarray] = []
    batch_paths: list[str] = []

    def flush() -> None:
        if batch:
            _, feats = predictor.predict_u8(np.stack(batch))
            chunks.append(np.asarray(feats, dtype=np.float32))
            kept.extend(batch_paths)
            batch.clear()
            batch_paths.clear()

    total = len(files)
    for done, path in enumerate(files):
        if stop is not None and stop.is_set():
            raise Cancelled(f"indexing {root} cancelled after {done} of {total} images")
        try:
            batch.append(predictor.load_image(path))
            batch_paths.append(str(path))
        except ImageError as e:
            skipped.append({"path": e.path, "reason": e.reason})  # printable, whatever the name
        if len(batch) >= batch_size:
            flush()
        if progress is not None:
            progress(done + 1, total)
    flush()
    if not kept:
        raise RetrievalError(f"{root}: none of the {total} files could be read as an image")
    features = np.concatenate(chunks)
    storage = dtype
    if dtype == "float16" and float(np.abs(features).max()) > FLOAT16_MAX:
        storage = "float32"  # would overflow to inf in float16
    if storage == "float16":
        features = features.astype(np.float16).astype(np.float32)  # search what is stored
    model = predictor.describe()
    source = model.get("source")
    if isinstance(source, str) and Path(source).expanduser().exists():
        # Resolved against the folder the index is built from, so it can be used from anywhere.
        model["source"] = str(Path(source).expanduser().resolve())
    return GalleryIndex(
        paths=kept,
        features=features,
        fingerprint=predictor.fingerprint,
        model=model,
        root=str(root),
        stamps=stamps,
        skipped=skipped,
        storage_dtype=storage,
    )


def query_features(predictor: Predictor, paths: Sequence[str | os.PathLike[str]]) -> tuple[np.ndarray, list[str | None]]:
    """fc7 features of query images: (Q, D) float32 (zero rows for unreadable files) and, per file,
    None or the reason it could not be read."""
    errors: list[str | None] = []
    rows: list[np.ndarray | None] = []
    for path in paths:
        try:
            _, f = predictor.predict_u8(predictor.load_image(path)[None])
            rows.append(np.asarray(f[0], np.float32))
            errors.append(None)
        except ImageError as e:
            rows.append(None)
            errors.append(e.reason)
    dim = next((r.shape[0] for r in rows if r is not None), 0)
    if rows and not dim:
        # Every query failed: zero rows of the model's own width, so a search still runs and each
        # file is answered with its reason, not with "query has 0 features".
        _, blank = predictor.predict_u8(np.zeros((1, predictor.decode_size, predictor.decode_size, 3), np.uint8))
        dim = int(np.asarray(blank).shape[-1])
    feats = np.zeros((len(paths), dim), np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            feats[i] = r
    return feats, errors

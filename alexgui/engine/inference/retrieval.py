"""Nearest-neighbour image retrieval on the last hidden layer (paper, Figure 4 right).

A gallery index is a folder:

    INDEX/index.json          format, image paths, their sizes and mtimes, the model's fingerprint,
                              skipped files with reasons, the feature file's name and dtype
    INDEX/features-XXXX.npy   (N, 4096) fc7 features after ReLU, float16 (default) or float32

The .npy file is written first under a fresh name, then index.json is replaced atomically to point
at it, so a reader always sees a complete index. Loading uses np.load(allow_pickle=False) and JSON:
nothing in an index can run code.

Search is exact: squared Euclidean distances ||q||^2 - 2 q.g + ||g||^2 from one matrix product per
gallery chunk with precomputed gallery norms, then argpartition. Features are searched in float32
whatever the storage dtype (float16 halves the file; it is widened once when the index is loaded),
so results equal a brute-force numpy search over the stored values.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.inference.predict import IMAGE_SUFFIXES, Predictor, list_images
from alexgui.engine.store.atomic import atomic_open, atomic_write_text
from alexgui.errors import AlexguiError, Cancelled

INDEX_FORMAT = "alexgui-index/1"
INDEX_JSON = "index.json"
FLOAT16_MAX = 65504.0
# Rows per matrix product: big enough for BLAS to run at full speed, small enough that the (Q, rows)
# distance block stays in cache-friendly sizes when many queries arrive at once.
SEARCH_CHUNK = 32768

Progress = Callable[[int, int], None]


class RetrievalError(AlexguiError):
    """An index that cannot be built, read or searched; the message names the file and the problem."""


@dataclass
class GalleryIndex:
    paths: list[str]  # absolute paths of the indexed images, row order of `features`
    features: np.ndarray  # (N, D) float32, searched as is
    fingerprint: str  # the model's weights fingerprint when the index was built
    model: dict[str, Any]  # the predictor's describe() at build time
    root: str  # the gallery folder
    stamps: dict[str, list[int]] = field(default_factory=dict)  # path -> [size, mtime_ns] of every file seen
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"path", "reason"}]
    storage_dtype: str = "float16"
    location: Path | None = None
    sq_norms: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[0] != len(self.paths):
            raise RetrievalError(
                f"index: {len(self.paths)} paths but features of shape {self.features.shape}"
            )
        self.sq_norms = squared_norms(self.features)

    def __len__(self) -> int:
        return len(self.paths)


def squared_norms(features: np.ndarray) -> np.ndarray:
    """Row-wise ||g||^2 in float32, without a temporary copy of the features."""
    return np.einsum("ij,ij->i", features, features, dtype=np.float32)


def search(
    features: np.ndarray,
    sq_norms: np.ndarray,
    queries: np.ndarray,
    k: int,
    chunk: int = SEARCH_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest gallery rows to each query by Euclidean distance.

    Returns (indices (Q, k) int64, distances (Q, k) float32), nearest first; k is capped at the
    gallery size.
    """
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n = features.shape[0]
    if q.shape[1] != features.shape[1]:
        raise RetrievalError(f"query has {q.shape[1]} features, the index has {features.shape[1]}")
    k = min(int(k), n)
    if k <= 0:
        return np.zeros((q.shape[0], 0), np.int64), np.zeros((q.shape[0], 0), np.float32)
    q_sq = np.einsum("ij,ij->i", q, q)[:, None]
    d2 = np.empty((q.shape[0], n), np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = np.asarray(features[start:stop], dtype=np.float32)
        # ||q||^2 - 2 q.g + ||g||^2, in place to avoid extra (Q, chunk) temporaries
        out = d2[:, start:stop]
        if q.shape[0] == 1:
            np.dot(block, q[0], out=out[0])  # one query: a matrix-vector product, memory-bound
        else:
            np.matmul(q, block.T, out=out)
        out *= -2.0
        out += sq_norms[start:stop][None, :]
        out += q_sq
    if k < n:
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (q.shape[0], n)).copy()
    part_d2 = np.take_along_axis(d2, part, axis=1)
    order = np.argsort(part_d2, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    dist = np.sqrt(np.maximum(np.take_along_axis(part_d2, order, axis=1), 0.0))
    return idx, dist.astype(np.float32)


def nearest(index: GalleryIndex, query_features: np.ndarray, k: int = 8) -> list[list[tuple[str, float]]]:
    """For each query row, [(gallery path, distance)] nearest first."""
    idx, dist = search(index.features, index.sq_norms, query_features, k)
    return [[(index.paths[i], float(d)) for i, d in zip(row_i, row_d)] for row_i, row_d in zip(idx, dist)]


# ---- building ---------------------------------------------------------------------------------


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
    stamps = {str(p): _stamp(p) for p in files}
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
            batch.append(load_256(path))
            batch_paths.append(str(path))
        except ImageError as e:
            skipped.append({"path": str(path), "reason": e.reason})
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
    return GalleryIndex(
        paths=kept,
        features=features,
        fingerprint=predictor.fingerprint,
        model=predictor.describe(),
        root=str(root),
        stamps=stamps,
        skipped=skipped,
        storage_dtype=storage,
    )


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


# ---- disk -------------------------------------------------------------------------------------


def save_index(index: GalleryIndex, folder: str | os.PathLike[str]) -> Path:
    """Write the index into `folder` atomically (see the module docstring); returns the folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RetrievalError(f"{folder}: exists and is not a folder; an index is a folder")
    folder.mkdir(parents=True, exist_ok=True)
    previous = _read_json(folder / INDEX_JSON) if (folder / INDEX_JSON).exists() else None
    name = f"features-{secrets.token_hex(6)}.npy"
    data = index.features.astype(np.float16 if index.storage_dtype == "float16" else np.float32)
    try:
        with atomic_open(folder / name, "wb") as f:
            np.save(f, data, allow_pickle=False)
        meta = {
            "format": INDEX_FORMAT,
            "created": time.time(),
            "root": index.root,
            "fingerprint": index.fingerprint,
            "model": index.model,
            "features": name,
            "dtype": index.storage_dtype,
            "dim": int(index.features.shape[1]),
            "paths": index.paths,
            "stamps": index.stamps,
            "skipped": index.skipped,
        }
        atomic_write_text(folder / INDEX_JSON, json.dumps(meta, indent=1))
    except OSError as e:
        raise RetrievalError(f"{folder}: cannot write the index ({e.strerror or e})") from None
    if previous is not None:
        old = previous.get("features")
        if isinstance(old, str) and old != name and _is_plain_name(old):
            (folder / old).unlink(missing_ok=True)
    index.location = folder
    return folder


def load_index(folder: str | os.PathLike[str]) -> GalleryIndex:
    """Read an index folder written by save_index. Raises RetrievalError naming the problem."""
    folder = Path(folder)
    meta_path = folder / INDEX_JSON if folder.is_dir() else folder
    if not meta_path.exists():
        raise RetrievalError(f"{folder}: not an index (no {INDEX_JSON}); build one with `alexgui index`")
    meta = _read_json(meta_path)
    if meta.get("format") != INDEX_FORMAT:
        raise RetrievalError(f"{meta_path}: not an alexgui index (format {meta.get('format')!r})")
    name = meta.get("features")
    if not isinstance(name, str) or not _is_plain_name(name):
        raise RetrievalError(f"{meta_path}: bad feature file name {name!r}")
    npy = meta_path.parent / name
    try:
        raw = np.load(npy, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise RetrievalError(f"{npy}: cannot read the features ({e})") from None
    if raw.dtype not in (np.float16, np.float32) or raw.ndim != 2:
        raise RetrievalError(f"{npy}: expected a 2-d float16/float32 array, found {raw.dtype} {raw.shape}")
    # float16 is widened once here; float32 stays memory-mapped (the OS page cache keeps it warm).
    features = _widen(raw) if raw.dtype == np.float16 else raw
    paths = meta.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise RetrievalError(f"{meta_path}: 'paths' must be a list of strings")
    try:
        index = GalleryIndex(
            paths=paths,
            features=features,
            fingerprint=str(meta.get("fingerprint", "")),
            model=dict(meta.get("model") or {}),
            root=str(meta.get("root", "")),
            stamps={str(k): list(v) for k, v in dict(meta.get("stamps") or {}).items()},
            skipped=list(meta.get("skipped") or []),
            storage_dtype=str(meta.get("dtype", raw.dtype.name)),
            location=meta_path.parent,
        )
    except RetrievalError as e:
        raise RetrievalError(f"{meta_path}: {e}") from None
    return index


def _widen(half: np.ndarray, rows: int = 16384) -> np.ndarray:
    """float16 -> float32 in row blocks with torch (numpy's conversion is ~5x slower on 100k x 4096)."""
    import torch

    out = np.empty(half.shape, np.float32)
    target = torch.from_numpy(out)
    for start in range(0, half.shape[0], rows):
        block = np.array(half[start : start + rows])  # a writable copy of the mapped rows
        target[start : start + len(block)] = torch.from_numpy(block).float()
    return out


def stale_reasons(index: GalleryIndex, fingerprint: str | None = None, max_listed: int = 3) -> list[str]:
    """Why the index no longer matches the model or the folder; an empty list means it is current."""
    reasons: list[str] = []
    if fingerprint is not None and fingerprint != index.fingerprint:
        reasons.append(
            f"built with a different model (fingerprint {index.fingerprint[:12] or '?'}, current {fingerprint[:12]})"
        )
    root = Path(index.root)
    if not root.is_dir():
        reasons.append(f"the gallery folder {root} no longer exists")
        return reasons
    now = {str(p): p for p in list_images(root)}
    added = sorted(set(now) - set(index.stamps))
    removed = sorted(set(index.stamps) - set(now))
    changed = sorted(p for p in set(now) & set(index.stamps) if _stamp(now[p]) != list(index.stamps[p]))
    for what, items in (("new", added), ("removed", removed), ("changed", changed)):
        if items:
            shown = ", ".join(Path(p).name for p in items[:max_listed])
            more = f" and {len(items) - max_listed} more" if len(items) > max_listed else ""
            reasons.append(f"{len(items)} {what} image file(s) in {root}: {shown}{more}")
    return reasons


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise RetrievalError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise RetrievalError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise RetrievalError(f"{path}: expected a JSON object")
    return data


def _is_plain_name(name: str) -> bool:
    # The feature file must sit next to index.json: no folders, no way out of the index.
    return name == Path(name).name and name not in ("", ".", "..") and name.endswith(".npy")


def query_features(predictor: Predictor, paths: Sequence[str | os.PathLike[str]]) -> tuple[np.ndarray, list[str | None]]:
    """fc7 features of query images: (Q, D) float32 (zero rows for unreadable files) and, per file,
    None or the reason it could not be read."""
    errors: list[str | None] = []
    rows: list[np.ndarray | None] = []
    for path in paths:
        try:
            _, f = predictor.predict_u8(load_256(path)[None])
            rows.append(np.asarray(f[0], np.float32))
            errors.append(None)
        except ImageError as e:
            rows.append(None)
            errors.append(e.reason)
    dim = next((r.shape[0] for r in rows if r is not None), 0)
    feats = np.zeros((len(paths), dim), np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            feats[i] = r
    return feats, errors

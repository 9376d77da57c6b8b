"""A gallery index in memory and exact nearest-neighbour search over it (retrieval.py has the story).

Search is exact: squared Euclidean distances ||q||^2 - 2 q.g + ||g||^2 from one matrix product per
gallery chunk with precomputed gallery norms, then argpartition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexgui.errors import AlexguiError

INDEX_FORMAT = "alexgui-index/1"
INDEX_JSON = "index.json"
FLOAT16_MAX = 65504.0
# Rows per matrix product: big enough for BLAS to run at full speed, small enough that the (Q, rows)
# distance block stays in cache-friendly sizes when many queries arrive at once.
SEARCH_CHUNK = 32768


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


def file_stamp(path: Path) -> list[int]:
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]

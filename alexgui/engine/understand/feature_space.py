"""A map of the fc7 space: every image of a gallery index placed in 2-D, near images near each other.

Two methods:
- "tsne" (default): t-SNE by openTSNE, which keeps neighbourhoods (clusters of a class, near-duplicates)
  and scales to 100k points on a laptop (FFT-accelerated gradients). The 4096-d features are first
  reduced to their top 50 principal components, the standard first step: fc7's variance sits in a
  few dozen directions, so the neighbours found there are nearly those of the full space, at 80x less
  cost. They are then found exactly (matrix products and torch's topk), which is deterministic,
  cancellable and reports progress, where openTSNE's approximate index (Annoy) is none of these.
  Initialised from the first two principal components, as openTSNE's "pca" initialisation.
- "pca": the top two principal components: exact and quick, its axes the two directions of largest
  variance, but classes overlap more.
UMAP is not offered: umap-learn pulls in numba and llvmlite, a compiler toolchain for one method.

Principal components come from the covariance matrix (accumulated in row blocks, so a memory-mapped
index is never copied whole) by ARPACK's Lanczos iteration to full precision from a fixed start
vector, each component signed so that its largest loading is positive. The same index, method and
seed give the identical map, bit for bit, on a machine: t-SNE's jitter is seeded and its thread count
set by the map's size. (Across machines, or with another BLAS thread count, sums are ordered
differently and a t-SNE map differs in its details.)

Coordinates are float32, centred and scaled into [-1, 1] (aspect kept). A map is cached in the index's
folder (`feature-map-tsne-SEED.npz`, `feature-map-pca.npz`) under a hash of the index's paths and
features and the method's settings, so a rebuilt index is mapped again; the file is written
atomically and read with np.load(allow_pickle=False): it cannot run code.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexgui.engine.inference.gallery import GalleryIndex
from alexgui.engine.inference.index_files import load_index
from alexgui.engine.store.atomic import atomic_open
from alexgui.engine.store.npz import NpzError, read_npz
from alexgui.errors import AlexguiError, Cancelled

Progress = Callable[[int, int], None]

METHODS = ("tsne", "pca")
METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA"}
MIN_IMAGES = {"tsne": 3, "pca": 2}
PCA_DIMS = 50  # t-SNE's input: the top principal components (see the module docstring)
PERPLEXITY = 30.0
EARLY_ITERATIONS = 250  # openTSNE's defaults: exaggerated phase, then the main one
ITERATIONS = 500
CALLBACK_EVERY = 10  # iterations between progress reports and checks of `stop`
# openTSNE's own switch: Barnes-Hut is faster below this many points, the FFT scheme above. Below it
# one thread is faster too (a second one waits more than it works on small maps), and above it two
# threads, whatever the machine has, so that the thread count (and with it the map) depends only on
# the index.
FFT_FROM = 10_000
ROWS = 4096  # rows per block in the covariance and the projection
DISTANCES = 1 << 25  # distances per block of the neighbour search: 128 MB, whatever the map's size
CACHE_FORMAT = "alexgui-feature-map/1"
class FeatureSpaceError(AlexguiError):
    """An index that cannot be mapped; the message names the file and the problem."""


@dataclass
class FeatureMap:
    coords: np.ndarray  # (N, 2) float32 in [-1, 1], row order of `paths`
    paths: list[str]
    method: str
    seed: int
    key: str  # the hash of the index's contents and the settings (the cache's key)
    from_cache: bool = False
    cached_at: Path | None = None  # the cache file holding this map, None when none could be written
    classes: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.classes = [class_of(p) for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"path": p, "x": float(x), "y": float(y)} for p, (x, y) in zip(self.paths, self.coords.tolist())]


def class_of(path: str) -> str:
    """An image's class for colouring: its parent folder's name."""
    return Path(path).parent.name or "(no folder)"


def compute_map(index: GalleryIndex | str | os.PathLike[str], method: str = "tsne", seed: int = 0,
                progress: Progress | None = None, stop: threading.Event | None = None, use_cache: bool = True) -> FeatureMap:
    """The map of an index (or an index folder): from its cache when current, else computed (and
    cached). Raises FeatureSpaceError (or RetrievalError for an unreadable index) naming the file,
    Cancelled when `stop` is set."""
    index = _index(index)
    where = str(index.location or index.root or "index")
    _check(index, method, where)
    key = map_key(index, method, seed, stop)
    if use_cache:
        hit = _read_cache(index, method, seed, key)
        if hit is not None:
            if progress is not None:
                progress(1, 1)
            return hit
    coords = embed(index.features, method, seed, progress, stop, where)
    fmap = FeatureMap(coords, list(index.paths), method, seed, key)
    fmap.cached_at = _write_cache(index, fmap) if use_cache else None
    return fmap


def cached_map(index: GalleryIndex, method: str = "tsne", seed: int = 0,
               stop: threading.Event | None = None) -> FeatureMap | None:
    """The index's cached map when one is there and current, else None; never computes one."""
    if method not in METHODS or index.location is None:
        return None
    return _read_cache(index, method, seed, map_key(index, method, seed, stop))


def cache_path(index: GalleryIndex, method: str, seed: int) -> Path | None:
    """Where the map is cached: in the index's folder; None for an index not saved anywhere."""
    if index.location is None:
        return None
    name = "feature-map-pca.npz" if method == "pca" else f"feature-map-{method}-{int(seed)}.npz"
    return Path(index.location) / name


def map_key(index: GalleryIndex, method: str, seed: int, stop: threading.Event | None = None) -> str:
    """A hash of what the map depends on: the index's paths and features, the method and its settings."""
    h = hashlib.blake2b(digest_size=16)
    settings: list[Any] = [CACHE_FORMAT, method, index.features.shape]
    if method == "tsne":  # PCA depends on no seed
        settings += [int(seed), PCA_DIMS, PERPLEXITY, EARLY_ITERATIONS, ITERATIONS, FFT_FROM]
    h.update(repr(settings).encode())
    for p in index.paths:
        h.update(p.encode("utf-8", "surrogatepass") + b"\0")
    for start in range(0, len(index), 16 * ROWS):
        _check_stop(stop, "mapping cancelled while reading the index")
        h.update(np.ascontiguousarray(index.features[start : start + 16 * ROWS], dtype=np.float32).data)
    return h.hexdigest()


def embed(features: np.ndarray, method: str, seed: int = 0, progress: Progress | None = None,
          stop: threading.Event | None = None, where: str = "index") -> np.ndarray:
    """(N, D) features -> (N, 2) float32 coordinates in [-1, 1] by `method` (no cache)."""
    if method == "pca":
        report = _scaled(progress, 0, 100, 100)
        coords = principal_components(features, 2, report, stop, where)
        if coords.shape[1] < 2:
            coords = np.hstack([coords, np.zeros((len(coords), 2 - coords.shape[1]), coords.dtype)])
        return normalise(coords)
    if method != "tsne":
        raise FeatureSpaceError(where, f"unknown map method {method!r}; choose one of {', '.join(METHODS)}")
    n = features.shape[0]
    pca_units, knn_units = stage_units(n)
    total = pca_units + knn_units + EARLY_ITERATIONS + ITERATIONS
    reduced = principal_components(features, PCA_DIMS, _scaled(progress, 0, pca_units, total), stop, where)
    k = min(n - 1, int(3 * PERPLEXITY))
    neighbours, distances = nearest_neighbours(reduced, k, _scaled(progress, pca_units, knn_units, total), stop)
    return normalise(_tsne(reduced, neighbours, distances, seed, progress, stop, pca_units + knn_units, total))


def stage_units(n: int) -> tuple[int, int]:
    """t-SNE's progress counts one unit per iteration; the principal components and the neighbour
    search before them count as many as they take time, so that the time left is right from the
    start: about 180 and 350 iterations' worth at 100k points (benchmarks/bench_feature_space.py),
    the components growing with n and the exact search with n squared."""
    return max(10, 180 * n // 100_000), max(5, 350 * n * n // 100_000**2)


def principal_components(features: np.ndarray, dims: int, progress: Progress | None = None,
                         stop: threading.Event | None = None, where: str = "index") -> np.ndarray:
    """The features projected on their top `dims` principal components (fewer when the data has
    fewer), (N, dims) float32, largest variance first."""
    n, d = features.shape
    mean = np.zeros(d, np.float64)
    for start in range(0, n, ROWS):
        mean += np.asarray(features[start : start + ROWS], np.float32).sum(0, dtype=np.float64)
    mean = (mean / n).astype(np.float32)
    blocks = -(-n // ROWS)
    cov = np.zeros((d, d), np.float64)
    for i, start in enumerate(range(0, n, ROWS)):
        _check_stop(stop, f"mapping cancelled after {start} of {n} images (principal components)")
        block = np.asarray(features[start : start + ROWS], np.float32) - mean
        cov += block.T @ block  # float32 products of a few thousand rows, summed in float64
        if progress is not None:
            progress(i + 1, 2 * blocks + 1)
    if not np.isfinite(cov).all():
        raise FeatureSpaceError(where, "the features hold infinite or NaN values; rebuild the index")
    if np.trace(cov) <= 0:
        raise FeatureSpaceError(where, f"all {n} images have the same features: there is nothing to map")
    vectors = _top_eigenvectors(cov, min(dims, n - 1, d), stop)
    if progress is not None:
        progress(blocks + 1, 2 * blocks + 1)
    out = np.empty((n, vectors.shape[1]), np.float32)
    for i, start in enumerate(range(0, n, ROWS)):
        _check_stop(stop, f"mapping cancelled after {start} of {n} images (projection)")
        out[start : start + ROWS] = (np.asarray(features[start : start + ROWS], np.float32) - mean) @ vectors
        if progress is not None:
            progress(blocks + 2 + i, 2 * blocks + 1)
    return out


def _top_eigenvectors(cov: np.ndarray, k: int, stop: threading.Event | None) -> np.ndarray:
    """The eigenvectors of the k largest eigenvalues of a symmetric matrix, largest first, float32,
    each signed so that its largest loading is positive."""
    import scipy.linalg
    import scipy.sparse.linalg

    d = cov.shape[0]
    if d <= 512 or k >= d // 4:
        # Small (or many components): a full decomposition is cheap and needs no iteration.
        _, vectors = scipy.linalg.eigh(cov, subset_by_index=[d - k, d - 1])
    else:
        # A 4096 x 4096 decomposition takes seconds; Lanczos finds the top 50 to full precision in
        # a fraction of that. The start vector is fixed (ARPACK's default is random).
        def matvec(v: np.ndarray) -> np.ndarray:
            _check_stop(stop, "mapping cancelled (principal components)")
            return cov @ v

        op = scipy.sparse.linalg.LinearOperator((d, d), matvec=matvec, dtype=np.float64)
        _, vectors = scipy.sparse.linalg.eigsh(op, k=k, which="LA", v0=np.ones(d) / np.sqrt(d), tol=0)
    vectors = vectors[:, ::-1]
    signs = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(vectors.shape[1])])
    return np.ascontiguousarray(vectors * np.where(signs == 0, 1.0, signs), dtype=np.float32)


def nearest_neighbours(points: np.ndarray, k: int, progress: Progress | None = None,
                       stop: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each point's k nearest other points, exactly: (N, k) int64 indices and float64 distances,
    nearest first."""
    import torch

    n = points.shape[0]
    sq = np.einsum("ij,ij->i", points, points)
    indices = np.empty((n, k), np.int64)
    distances = np.empty((n, k), np.float64)
    rows = max(64, min(ROWS, DISTANCES // n))
    for start in range(0, n, rows):
        _check_stop(stop, f"mapping cancelled after {start} of {n} images (nearest neighbours)")
        stop_row = min(start + rows, n)
        d2 = points[start:stop_row] @ points.T
        d2 *= -2.0
        d2 += sq[None, :]
        d2 += sq[start:stop_row, None]
        d2[np.arange(stop_row - start), np.arange(start, stop_row)] = np.inf  # not its own neighbour
        # torch's topk is ~10x faster than argpartition here, and selects without arithmetic.
        values, found = torch.topk(torch.from_numpy(d2), k, dim=1, largest=False, sorted=True)
        indices[start:stop_row] = found.numpy()
        distances[start:stop_row] = np.sqrt(np.maximum(values.numpy(), 0.0))
        if progress is not None:
            progress(stop_row, n)
    return indices, distances


def _tsne(reduced: np.ndarray, neighbours: np.ndarray, distances: np.ndarray, seed: int, progress: Progress | None,
          stop: threading.Event | None, done_before: int, total: int) -> np.ndarray:
    from openTSNE import TSNE, initialization
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = reduced.shape[0]
    init = np.array(reduced[:, :2], np.float64)
    init = initialization.jitter(initialization.rescale(init), random_state=seed)  # as openTSNE's "pca"
    iterations = [0]
    stopped = [False]

    def callback(iteration: int, error: float, embedding: np.ndarray) -> bool:
        iterations[0] += CALLBACK_EVERY  # the count starts again in the second phase
        if progress is not None:
            progress(done_before + iterations[0], total)
        stopped[0] = stop is not None and stop.is_set()
        return stopped[0]  # True interrupts the optimisation

    tsne = TSNE(
        perplexity=min(PERPLEXITY, neighbours.shape[1] / 3),  # fewer than 91 images: what k allows
        early_exaggeration_iter=EARLY_ITERATIONS,
        n_iter=ITERATIONS,
        initialization=init,
        neighbors=PrecomputedNeighbors(neighbours, distances),
        negative_gradient_method="fft" if n >= FFT_FROM else "bh",
        n_jobs=2 if n >= FFT_FROM else 1,
        random_state=seed,
        callbacks=callback,
        callbacks_every_iters=CALLBACK_EVERY,
    )
    embedding = tsne.fit(reduced)  # an interrupted fit returns the embedding as it was then
    if stopped[0]:
        raise Cancelled(f"mapping cancelled after {iterations[0]} of {EARLY_ITERATIONS + ITERATIONS} t-SNE iterations")
    return np.asarray(embedding, np.float32)


def normalise(coords: np.ndarray) -> np.ndarray:
    """Centred on the middle of the points' bounding box and scaled into [-1, 1], aspect kept."""
    coords = np.asarray(coords, np.float64)
    low, high = coords.min(0), coords.max(0)
    half = float((high - low).max()) / 2
    out = coords - (low + high) / 2
    if half > 0:
        out /= half
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _index(index: GalleryIndex | str | os.PathLike[str]) -> GalleryIndex:
    return index if isinstance(index, GalleryIndex) else load_index(index)


def _check(index: GalleryIndex, method: str, where: str) -> None:
    if method not in METHODS:
        raise FeatureSpaceError(where, f"unknown map method {method!r}; choose one of {', '.join(METHODS)}")
    need = MIN_IMAGES[method]
    if len(index) < need:
        raise FeatureSpaceError(where, f"{METHOD_NAMES[method]} needs at least {need} images; the index has {len(index)}")
    if index.features.shape[1] < 2:
        raise FeatureSpaceError(where, f"the index has {index.features.shape[1]} feature(s) per image; a map needs 2 or more")


def _read_cache(index: GalleryIndex, method: str, seed: int, key: str) -> FeatureMap | None:
    path = cache_path(index, method, seed)
    if path is None or not path.is_file():
        return None
    try:
        data = read_npz(path, ("key", "coords"))
    except (OSError, NpzError):
        return None  # unreadable or not ours: computed again and replaced
    stored_key, coords = str(data["key"]), data["coords"]
    if stored_key != key or coords.dtype != np.float32 or coords.shape != (len(index), 2) or not np.isfinite(coords).all():
        return None  # stale (the index was rebuilt) or damaged
    return FeatureMap(coords, list(index.paths), method, seed, key, from_cache=True, cached_at=path)


def _write_cache(index: GalleryIndex, fmap: FeatureMap) -> Path | None:
    path = cache_path(index, fmap.method, fmap.seed)
    if path is None:
        return None
    try:
        with atomic_open(path, "wb") as f:
            np.savez(f, coords=fmap.coords, key=np.array(fmap.key))
    except OSError:
        return None  # a read-only index folder: the map is still returned, only computed again next time
    return path


def _scaled(progress: Progress | None, offset: int, units: int, total: int) -> Progress | None:
    """A stage's own (done, total) as `units` of an overall count starting at `offset`."""
    if progress is None:
        return None
    return lambda done, of: progress(offset + (units * done // of if of else 0), total)


def _check_stop(stop: threading.Event | None, message: str) -> None:
    if stop is not None and stop.is_set():
        raise Cancelled(message)

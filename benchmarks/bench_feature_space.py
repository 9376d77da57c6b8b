"""The map of the fc7 space: t-SNE and PCA on 10,000 and 100,000 clustered 4096-d vectors.

    python -m benchmarks.bench_feature_space [--sizes 10000 100000] [--clusters 50] [--no-repeat]

Synthetic features stand in for an index (fc7 after ReLU: non-negative, about half zeros), drawn
around --clusters centres. For each size, in one process: PCA's map, then t-SNE's with the time of
each of its stages (principal components, exact nearest neighbours, the optimisation) from its
progress reports; the ratio t-SNE / PCA; and how well each map keeps clusters together: of each
point's 10 nearest points in the map, the share from its own cluster (a sample of 2,000 points;
1.0 is perfect, 1/clusters is chance). At the smallest size t-SNE runs twice and the two maps are
compared bit for bit (--no-repeat skips it). Heavy: one run of each, no repeats; minutes at 100k.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alexgui.engine.understand import feature_space as F
from benchmarks.machine import describe_cpu


def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    labels = rng.integers(0, clusters, n)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 5000):
        stop = min(start + 5000, n)
        block = centres[labels[start:stop]] + 1.2 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        out[start:stop] = np.maximum(block, 0)  # ReLU
    return out, labels


def cluster_agreement(coords: np.ndarray, labels: np.ndarray, k: int = 10, sample: int = 2000) -> float:
    rng = np.random.default_rng(1)
    rows = rng.choice(len(coords), min(sample, len(coords)), replace=False)
    d2 = ((coords[rows, None, :].astype(np.float64) - coords[None, :, :]) ** 2).sum(-1)
    d2[np.arange(len(rows)), rows] = np.inf
    nearest = np.argpartition(d2, k, axis=1)[:, :k]
    return float((labels[nearest] == labels[rows, None]).mean())


def stages(features: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """t-SNE's map and the seconds each stage took, read off its progress reports."""
    marks: dict[str, float] = {}
    pca_units, knn_units = F.stage_units(len(features))
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        now = time.perf_counter() - t0
        if done >= pca_units and "pca" not in marks:
            marks["pca"] = now
        if done >= pca_units + knn_units and "knn" not in marks:
            marks["knn"] = now

    coords = F.embed(features, "tsne", seed, progress)
    total = time.perf_counter() - t0
    return coords, {"principal components": marks["pca"], "nearest neighbours": marks["knn"] - marks["pca"],
                    "optimisation": total - marks["knn"], "total": total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--clusters", type=int, default=50)
    ap.add_argument("--no-repeat", action="store_true", help="skip the bit-for-bit repeat at the smallest size")
    args = ap.parse_args()
    import openTSNE

    print(f"machine: {describe_cpu()}; numpy {np.__version__}, openTSNE {openTSNE.__version__}")
    print(f"t-SNE: {F.PCA_DIMS} principal components, perplexity {F.PERPLEXITY:g}, "
          f"{F.EARLY_ITERATIONS}+{F.ITERATIONS} iterations, Barnes-Hut with 1 thread below {F.FFT_FROM}, FFT with 2 above")
    for n in args.sizes:
        features, labels = clustered(n, args.dim, args.clusters)
        print(f"\n{n} x {args.dim} float32 ({features.nbytes / 1e9:.2f} GB), {args.clusters} clusters")
        t0 = time.perf_counter()
        pca = F.embed(features, "pca")
        t_pca = time.perf_counter() - t0
        print(f"  PCA    {t_pca:8.1f} s   clusters kept: {cluster_agreement(pca, labels):.2f}")
        tsne, took = stages(features, seed=0)
        shares = ", ".join(f"{name} {s:.1f} s" for name, s in took.items() if name != "total")
        print(f"  t-SNE  {took['total']:8.1f} s   clusters kept: {cluster_agreement(tsne, labels):.2f}   ({shares})")
        print(f"  ratio t-SNE / PCA: {took['total'] / t_pca:.1f}")
        if n == min(args.sizes) and not args.no_repeat:
            again, _ = stages(features, seed=0)
            print(f"  the same seed again: {'bit for bit identical' if np.array_equal(again, tsne) else 'DIFFERENT'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

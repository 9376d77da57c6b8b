"""Exact nearest-neighbour search over a 100,000-image gallery of 4096-d fc7 features.

    python benchmarks/bench_retrieval.py [--n 100000] [--dim 4096] [--repeats 9] [--threads 2]

A synthetic gallery stands in for real features (fc7 after ReLU: non-negative, about half zeros).
Measured side by side in one process, interleaved (A B C A B C ...), after a warm-up, as medians:

  A  float32 features in RAM (what a float16 index becomes once loaded), one query
  B  float32 features memory-mapped from a float32 .npy (page cache warm), one query
  C  float32 in RAM, a batch of 16 queries (per-query time)

plus the one-off costs of each storage choice (file size, load time, widening float16) and, for
reference, torch's float16 matrix-vector product (fast, but rounds scores to float16, so it is
not exact and not used). Every search result is checked against brute force on a sample query.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alexgui.engine.inference.retrieval import search, squared_norms


def synthetic_gallery(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 10000):
        block = rng.standard_normal((min(10000, n - start), dim), dtype=np.float32)
        np.maximum(block, 0, out=block)  # ReLU: non-negative, half zeros
        out[start : start + len(block)] = block
    return out


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2, help="BLAS/torch threads (the target machine has 2 cores)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; numpy {np.__version__}")
    print(f"gallery: {args.n} x {args.dim}, k = {args.k}, {args.threads} threads")
    gallery = synthetic_gallery(args.n, args.dim)
    rng = np.random.default_rng(1)
    queries = np.maximum(rng.standard_normal((16, args.dim), dtype=np.float32), 0)

    with tempfile.TemporaryDirectory() as tmp:
        f32_path, f16_path = Path(tmp) / "f32.npy", Path(tmp) / "f16.npy"
        t_save32 = timed(lambda: np.save(f32_path, gallery))
        t_save16 = timed(lambda: np.save(f16_path, gallery.astype(np.float16)))
        print(f"storage: float32 {f32_path.stat().st_size / 1e9:.2f} GB (save {t_save32:.0f} ms), "
              f"float16 {f16_path.stat().st_size / 1e9:.2f} GB (save {t_save16:.0f} ms)")
        from alexgui.engine.inference.retrieval import _widen

        t_load16_np = timed(lambda: np.load(f16_path, allow_pickle=False).astype(np.float32))
        t_load16 = timed(lambda: _widen(np.load(f16_path, allow_pickle=False, mmap_mode="r")))
        t_map32 = timed(lambda: np.load(f32_path, allow_pickle=False, mmap_mode="r"))
        print(f"open: float16 load + widen to float32 {t_load16:.0f} ms as load_index does it (torch), "
              f"{t_load16_np:.0f} ms with numpy astype; float32 memory-map {t_map32:.1f} ms")

        ram = gallery
        mapped = np.load(f32_path, allow_pickle=False, mmap_mode="r")
        t_norms = timed(lambda: squared_norms(ram))
        norms = squared_norms(ram)
        print(f"gallery norms (once per load): {t_norms:.0f} ms")

        # exactness on a sample query
        idx, dist = search(ram, norms, queries[:1], args.k)
        brute = np.sqrt(((ram.astype(np.float64) - queries[0]) ** 2).sum(1))
        want = np.argsort(brute, kind="stable")[: args.k]
        assert np.array_equal(idx[0], want), "search differs from brute force"
        assert np.allclose(dist[0], brute[want], rtol=1e-4)
        print("exactness: top-k equals brute force (float64) on the sample query")

        cases = {
            "A float32 RAM, 1 query": lambda: search(ram, norms, queries[:1], args.k),
            "B float32 mmap, 1 query": lambda: search(mapped, norms, queries[:1], args.k),
            "C float32 RAM, 16 queries (per query)": lambda: search(ram, norms, queries, args.k),
        }
        for fn in cases.values():  # warm-up: page cache, BLAS threads
            fn()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, fn in cases.items():
                t = timed(fn)
                times[name].append(t / 16 if name.startswith("C") else t)
        for name, ts in times.items():
            print(f"{name:40s} median {statistics.median(ts):7.1f} ms   (min {min(ts):.1f}, max {max(ts):.1f})")
        base = statistics.median(times["A float32 RAM, 1 query"])
        print(f"ratios: B/A {statistics.median(times['B float32 mmap, 1 query']) / base:.2f}, "
              f"C/A {statistics.median(times['C float32 RAM, 16 queries (per query)']) / base:.2f}")

    try:
        import torch

        torch.set_num_threads(args.threads)
        g16 = torch.from_numpy(gallery).half()
        q16 = torch.from_numpy(queries[0]).half()
        g16 @ q16
        ts = [timed(lambda: g16 @ q16) for _ in range(args.repeats)]
        print(f"reference: torch float16 matrix-vector (scores rounded to float16, not exact): "
              f"median {statistics.median(ts):.1f} ms")
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Timing helpers shared by the sections: synchronised clocks, A B A B medians, step counts sized to the
budget, FLOP counts and the device's peak."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch

from benchmarks.bench_train_gpu import PEAK_TFLOPS

# Training FLOP per image = 3 x forward (backward ~ 2 x forward); forward FLOP = 2 x multiply-adds.
TRAIN_FLOP_FACTOR = 3.0


def sync(device: torch.device) -> None:
    """Device work is asynchronous: wait for it before reading a host clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device, repeat: int = 1) -> float:
    """Wall seconds of `repeat` calls of fn, the device drained before and after."""
    sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(fns: Mapping[str, Callable[[], object]], rounds: int, device: torch.device,
                warmup: int = 1) -> dict[str, float]:
    """Median seconds of each fn, run in turn (A B C, then C B A, ...) after `warmup` calls of each.

    Alternating the order spreads slow drifts (clocks, other load, the allocator) over all of them.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(max(1, rounds)):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(seconds(fns[name], device))
    return {name: statistics.median(t) for name, t in times.items()}


def steps_for(step_s: float, target_s: float, lo: int, hi: int) -> int:
    """Timed steps per segment: about target_s of work, within [lo, hi]."""
    if step_s <= 0:
        return hi
    return max(lo, min(hi, int(target_s / step_s)))


def peak_tflops(device: torch.device, precision: str) -> float | None:
    """The vendor's dense peak for known GPUs (H200/H100: 989 bf16, 67 fp32), else None (MFU n/a)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks.get(precision)
    return None


def mfu(images_per_s: float, flop_per_image: float, peak: float | None) -> float | None:
    """Model FLOP utilisation: the useful training FLOP per second over the device's peak."""
    if peak is None or peak <= 0:
        return None
    return images_per_s * flop_per_image / (peak * 1e12)


def matmul_tflops(device: torch.device, n: int, dtype: torch.dtype, repeat: int) -> float:
    """A square matrix product's rate, as a measured ceiling beside the datasheet's (random data: zeros
    run faster on these chips)."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    for _ in range(2):
        a @ b
    t = seconds(lambda: a @ b, device, repeat)
    return 2 * n**3 * repeat / t / 1e12

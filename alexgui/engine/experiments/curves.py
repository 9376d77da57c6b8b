"""Curves from the runs' logs as the report uses them: a trailing mean, the first step at a target, and
a curve thinned to what a plot needs."""

from __future__ import annotations

import numpy as np

MAX_CURVE_POINTS = 400  # per curve in report.json: enough for a plot, small enough to read


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` values; NaN until the window is full."""
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        sums = np.cumsum(np.insert(np.asarray(values, np.float64), 0, 0.0))
        out[window - 1 :] = (sums[window:] - sums[:-window]) / window
    return out


def steps_to_target(steps: np.ndarray, errors: np.ndarray, target: float, window: int) -> int | None:
    """First step whose trailing `window`-step mean training error is at or below `target`; None if never."""
    smooth = running_mean(errors, window)
    hit = np.flatnonzero(smooth <= target)
    return int(steps[hit[0]]) if len(hit) else None


def downsample(x: np.ndarray, y: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> tuple[list[float], list[float]]:
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) > max_points:
        idx = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
        x, y = x[idx], y[idx]
    return [float(v) for v in x], [float(v) for v in y]

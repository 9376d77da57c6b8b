"""The plots' axes: plain-number log ticks, decimated curves, and ranges that hold still while a run grows.

Pure functions and one axis class, kept apart from the plots' widget (plots.py) so that they can be
reasoned about and tested without a window.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg

# Points drawn per curve at most: about two per pixel of a plot's width. Long runs are decimated here
# (min/max per bin for the noisy per-step curves, so spikes stay visible) rather than by pyqtgraph's
# auto-downsampling, which is only as good as the view range known when setData is called.
MAX_POINTS = 800


class LogAxis(pg.AxisItem):
    """A log axis labelled with plain numbers (0.01, 0.005, 0.001) at 1-2-5 steps, not 10^x with a scale factor."""

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            x = 10 ** float(v) * scale
            mantissa = x / 10 ** np.floor(np.log10(x)) if x > 0 else 0
            out.append(f"{x:g}" if any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5)) else "")
        return out


def decimate(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS, peaks: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """At most max_points points: every k-th point, or with peaks the min and max of each bin of 2k."""
    n = len(x)
    if n <= max_points:
        return x, y
    if not peaks:
        k = -(-n // max_points)
        idx = np.arange(0, n, k)
        if idx[-1] != n - 1:
            idx = np.append(idx, n - 1)  # always end at the newest point
        return x[idx], y[idx]
    bins = max_points // 2
    k = -(-n // bins)
    m = (n // k) * k
    xb = x[:m].reshape(-1, k)
    yb = y[:m].reshape(-1, k)
    with np.errstate(invalid="ignore"):
        lo = np.nanargmin(np.where(np.isnan(yb), np.inf, yb), axis=1)
        hi = np.nanargmax(np.where(np.isnan(yb), -np.inf, yb), axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)  # keep the pair in x order
    rows = np.arange(len(xb))
    px = np.stack([xb[rows, first], xb[rows, second]], axis=1).ravel()
    py = np.stack([yb[rows, first], yb[rows, second]], axis=1).ravel()
    return np.concatenate([px, x[m:]]), np.concatenate([py, y[m:]])


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= x (x > 0)."""
    exponent = math.floor(math.log10(x))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        value = m * 10.0 ** exponent
        if value >= x * (1 - 1e-12):
            return value
    return 10.0 ** (exponent + 1)


# A kept range must still be this full of data (x, y); a new y range leaves this margin on each side.
FILL_X, FILL_Y = 0.3, 0.5
Y_MARGIN = 0.15

Range = tuple[float, float, float, float]  # x0, x1, y0, y1


def sticky_range(current: Range | None, data: Range, log_y: bool = False) -> Range:
    """The (x0, x1, y0, y1) a live plot shows for data bounds (x0, x1, y0, y1).

    Each axis keeps its current range while that holds the data and the data fills enough of it;
    otherwise x runs from the first step to a round number about 1.3 times as far as the data, and y
    gets a margin beyond the data (with log_y the y values are log10, and a flat curve gets a decade)."""
    dx0, dx1, dy0, dy1 = data
    cx0, cx1, cy0, cy1 = current if current is not None else (0.0, 0.0, 0.0, 0.0)
    if current is not None and cx0 <= dx0 and dx1 <= cx1 and dx1 - cx0 >= FILL_X * (cx1 - cx0):
        x0, x1 = cx0, cx1
    else:
        x0, x1 = dx0, dx0 + nice_ceiling(max(1.3 * (dx1 - dx0), 1.0))
    if current is not None and cy0 <= dy0 and dy1 <= cy1 and dy1 - dy0 >= FILL_Y * (cy1 - cy0):
        return x0, x1, cy0, cy1
    span = dy1 - dy0
    if span <= 0:
        span = 1.0 if log_y else max(abs(dy0) * 0.2, 1e-3)
    return x0, x1, dy0 - Y_MARGIN * span, dy1 + Y_MARGIN * span

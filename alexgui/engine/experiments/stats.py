"""Honest summaries of a few seeds: mean, spread, and whether a difference stands out of the noise.

With K seeds per variant a difference of means is called real only when it exceeds twice its
standard error (sqrt(s_a^2/n_a + s_b^2/n_b), Welch's form: the variants need not share a variance).
That is a rough two-sigma rule, not a significance test; with 3 seeds it is a sanity check that keeps
a report from claiming an effect the seeds themselves disagree on. One seed has no spread, so nothing
can be separated from noise and the report says exactly that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NOISE_SIGMAS = 2.0  # |difference| must exceed this many standard errors to count as an effect
SINGLE_SEED = "single seed: cannot separate effect from noise"


@dataclass(frozen=True)
class Spread:
    values: tuple[float, ...]  # one per seed
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for one value
    n: int

    @property
    def stderr(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"values": list(self.values), "mean": self.mean, "std": self.std, "n": self.n}

    def text(self, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
        """'41.20 ± 0.35%' (one seed: '41.20%')."""
        if self.n == 0:
            return "n/a"
        if self.n == 1:
            return f"{self.mean * scale:.{digits}f}{unit}"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}{unit}"


def spread(values: Sequence[float]) -> Spread:
    """Mean and sample standard deviation of the finite values."""
    kept = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    n = len(kept)
    if n == 0:
        return Spread((), math.nan, math.nan, 0)
    mean = sum(kept) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (n - 1)) if n > 1 else 0.0
    return Spread(kept, mean, std, n)


@dataclass(frozen=True)
class Comparison:
    a: Spread
    b: Spread
    difference: float  # b.mean - a.mean
    stderr: float  # of the difference; nan with fewer than two values on either side
    within_noise: bool | None  # None: cannot tell (a single seed)
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "difference": self.difference,
            "stderr": None if math.isnan(self.stderr) else self.stderr,
            "within_noise": self.within_noise,
            "verdict": self.verdict,
        }


def compare(a: Sequence[float] | Spread, b: Sequence[float] | Spread) -> Comparison:
    """Is b's mean different from a's by more than NOISE_SIGMAS standard errors?"""
    sa = a if isinstance(a, Spread) else spread(a)
    sb = b if isinstance(b, Spread) else spread(b)
    if sa.n == 0 or sb.n == 0:
        return Comparison(sa, sb, math.nan, math.nan, None, "no measurement on one side")
    difference = sb.mean - sa.mean
    if sa.n < 2 or sb.n < 2:
        return Comparison(sa, sb, difference, math.nan, None, SINGLE_SEED)
    stderr = math.sqrt(sa.std**2 / sa.n + sb.std**2 / sb.n)
    within = abs(difference) <= NOISE_SIGMAS * stderr
    if within:
        verdict = f"within noise: |difference| {abs(difference):.4g} ≤ {NOISE_SIGMAS:g} × standard error {stderr:.4g}"
    else:
        verdict = f"outside noise: |difference| {abs(difference):.4g} > {NOISE_SIGMAS:g} × standard error {stderr:.4g}"
    return Comparison(sa, sb, difference, stderr, within, verdict)

"""Human-readable text shared by the command line and the desktop app (no Qt, no torch)."""

from __future__ import annotations

import math


def format_duration(seconds: float | None) -> str:
    """"1:02:05" for over an hour, "4:05" below; "–" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

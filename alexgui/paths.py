"""Where alexgui keeps things on the user's machine.

ALEXGUI_CACHE_DIR overrides the cache location (tests point it at a temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Decoded-image caches, the demo dataset, downloaded weights."""
    override = os.environ.get("ALEXGUI_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alexgui"

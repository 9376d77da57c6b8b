"""Where alexgui keeps things on the user's machine, and where its own files were installed.

ALEXGUI_CACHE_DIR overrides the cache location (tests point it at a temporary folder).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# resources/ and model_zoo/ sit beside the package in a checkout (and an editable install); a wheel
# installs them under <prefix>/share/alexgui (pyproject.toml's data-files).
CHECKOUT = Path(__file__).resolve().parents[1]
SHARE = Path(sys.prefix) / "share" / "alexgui"


def cache_dir() -> Path:
    """Decoded-image caches, the demo dataset, downloaded weights."""
    override = os.environ.get("ALEXGUI_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alexgui"


def shipped(relative: str, roots: tuple[Path, ...] = (CHECKOUT, SHARE)) -> Path:
    """A file alexgui ships (e.g. "model_zoo/registry.json"): from the checkout when running from one,
    else from the installed share folder. The first root's path when neither has it, so that the
    caller's error message names where it looked first."""
    for root in roots:
        candidate = root / relative
        if candidate.exists():
            return candidate
    return roots[0] / relative

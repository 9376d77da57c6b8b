"""The training form's presets: the one definition in alexgui/presets.py, which `alexgui train --preset`
uses too, so the app and the command line cannot drift apart. Re-exported here for the Qt side."""

from __future__ import annotations

from alexgui.presets import CUSTOM, CUSTOM_NOTE, PAPER, PRESETS, QUICK, Preset, matching

__all__ = ["CUSTOM", "CUSTOM_NOTE", "PAPER", "PRESETS", "QUICK", "Preset", "matching"]

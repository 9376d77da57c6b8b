"""File > Open recent: the recent datasets, runs and models, each under its heading, filled each time the
menu opens so it shows what the settings hold now (another window may have added to them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtWidgets import QMenu

from alexgui.qt.settings import AppSettings

HEADINGS = {"dataset": "Datasets", "run": "Runs", "model": "Models"}


def fill_recent_menu(menu: QMenu, settings: AppSettings, openers: Mapping[str, Callable[[str], Any]]) -> None:
    """The menu's items: for each kind in `openers` ("dataset", "run", "model") its recent paths, each
    opened by its opener; "Clear recent items" below them, or "No recent items" greyed."""
    menu.clear()
    any_items = False
    for kind, opener in openers.items():
        items = settings.recent(kind)
        if not items:
            continue
        menu.addSection(HEADINGS[kind])
        for item in items:
            action = menu.addAction(item)
            action.triggered.connect(lambda _=False, p=item, o=opener: o(p))
        any_items = True
    if any_items:
        menu.addSeparator()
        menu.addAction("Clear recent items", settings.clear_recent)
    else:
        menu.addAction("No recent items").setEnabled(False)

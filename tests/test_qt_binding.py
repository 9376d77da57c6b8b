"""The Qt binding itself: versions with known defects that would crash a long session."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QWidget


def test_qt_calls_that_return_none_keep_pythons_reference_counts(qtbot) -> None:
    # PySide6 6.12.0 drops a reference to None each time a wrapped call returns None (QWidget.parent()
    # with no parent, QGraphicsItem.scene(), ...). The plots make hundreds of such calls a second, so
    # the interpreter aborted with "deallocating None" within minutes. pyproject.toml excludes it.
    widget = QWidget()
    qtbot.addWidget(widget)
    before = sys.getrefcount(None)
    for _ in range(2_000):
        assert widget.parent() is None
    assert abs(sys.getrefcount(None) - before) < 100

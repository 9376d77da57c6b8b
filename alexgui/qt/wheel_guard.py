"""The mouse wheel scrolls panels; it changes a spin box or a combo box only once the user has clicked it.

Qt's spin boxes and combo boxes take every wheel event that passes over them, and take the focus
with it: scrolling down the Training panel moved Momentum from 0.900 to 0.700 without a word. One
application-wide event filter fixes that for every such field, built now or later:

- when a field is polished (once, before it is first shown) its focus policy becomes StrongFocus,
  so the wheel no longer gives it the focus (Qt hands focus out before any filter sees the wheel);
- a wheel event over a field without the focus is ignored and swallowed, so Qt passes it on to
  the parent, and the scroll area around the field scrolls instead.

A field with the focus (clicked, or tabbed to) still takes the wheel, as users expect.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QWidget

GUARDED = (QAbstractSpinBox, QComboBox)


class WheelGuard(QObject):
    """The event filter; see the module docstring. Install it with `install_wheel_guard`."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        # Cheap type tests first: this filter sees every event of the application.
        if kind == QEvent.Type.Wheel:
            if isinstance(watched, GUARDED) and not watched.hasFocus():
                event.ignore()  # not accepted: Qt offers the wheel to the parent (the scroll area)
                return True
        elif kind == QEvent.Type.Polish and isinstance(watched, GUARDED):
            guard_focus(watched)
        return False


def guard_focus(widget: QWidget) -> None:
    """Let the wheel pass a field without giving it the focus (keyboard and clicks still give it)."""
    if widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)


def install_wheel_guard(app: QApplication) -> WheelGuard:
    """Install the guard on the application once (a second call returns the installed one)."""
    existing = app.findChild(WheelGuard)
    if isinstance(existing, WheelGuard):
        return existing
    guard = WheelGuard(app)  # a child of the application: it lives as long as the app
    app.installEventFilter(guard)
    # Fields built before the guard was installed have been polished already.
    for widget in app.allWidgets():
        if isinstance(widget, GUARDED):
            guard_focus(widget)
    return guard

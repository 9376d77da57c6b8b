"""Keeping top-level windows on a screen: never larger than the screen they are on, never off it,
and widgets that do not make them wider than it.

Saved geometry comes from another session, maybe on another monitor or a larger one: restored as it
is, the window can open taller than the screen (Start, the progress and the status bar out of
reach) or where no screen is. `fit_rect` is the rule (pure, tested without a display); `fit_window`
applies it to a window on the screen it is on (or the one nearest its centre).
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QPoint, QRect, QSize
from PySide6.QtGui import QGuiApplication, QScreen
from PySide6.QtWidgets import QComboBox, QWidget

DEFAULT_SIZE = QSize(1280, 800)  # the window's first-launch size, when the screen has room for it
COMBO_CHARS = 12  # a combo box asks for this many characters, not for its longest item


def shrinkable(box: QComboBox, chars: int = COMBO_CHARS) -> QComboBox:
    """A combo box whose minimum width does not grow with its longest item (a dataset's path, a GPU's
    name, a preset's description): by default Qt makes it as wide as that item, and a docked panel's
    combo box made the dock, and the window, wider than a 1280-pixel screen. The popup list still
    shows whole items. A box already narrower than `chars` characters is left as it is."""
    before = box.minimumSizeHint().width()
    policy = box.sizeAdjustPolicy()
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(chars)
    _measure_again(box)
    if box.minimumSizeHint().width() >= before:  # its items are short: their width is the better one
        box.setSizeAdjustPolicy(policy)
        box.setMinimumContentsLength(0)
        _measure_again(box)
    return box


def _measure_again(box: QComboBox) -> None:
    # Qt keeps a minimum size it has already measured until the style changes: make it measure again.
    QCoreApplication.sendEvent(box, QEvent(QEvent.Type.StyleChange))
    box.updateGeometry()


def fit_rect(rect: QRect, available: QRect) -> QRect:
    """`rect` made no larger than `available` and moved so that all of it lies inside."""
    width = min(rect.width(), available.width())
    height = min(rect.height(), available.height())
    x = min(max(rect.x(), available.left()), available.left() + available.width() - width)
    y = min(max(rect.y(), available.top()), available.top() + available.height() - height)
    return QRect(x, y, width, height)


def fitted_size(size: QSize, available: QRect) -> QSize:
    return QSize(min(size.width(), available.width()), min(size.height(), available.height()))


def screen_for(rect: QRect) -> QScreen | None:
    """The screen under the rectangle's centre, else the one it overlaps most, else the primary one."""
    screen = QGuiApplication.screenAt(rect.center())
    if screen is not None:
        return screen
    best, best_area = None, 0
    for candidate in QGuiApplication.screens():
        overlap = candidate.availableGeometry().intersected(rect)
        area = overlap.width() * overlap.height() if overlap.isValid() else 0
        if area > best_area:
            best, best_area = candidate, area
    return best or QGuiApplication.primaryScreen()


def fit_window(window: QWidget) -> None:
    """Move and shrink a (normal, not maximised) top-level window into the available area of its screen.

    The frame (title bar, borders) counts: frameGeometry is what must fit; where the platform draws
    no frame it equals geometry."""
    if window.isMaximized() or window.isFullScreen():
        return
    frame = window.frameGeometry()
    screen = screen_for(frame)
    if screen is None:
        return
    available = screen.availableGeometry()
    fitted = fit_rect(frame, available)
    if fitted == frame:
        return
    extra_w = frame.width() - window.width()
    extra_h = frame.height() - window.height()
    window.resize(max(fitted.width() - extra_w, 1), max(fitted.height() - extra_h, 1))
    window.move(QPoint(fitted.x(), fitted.y()))


def place_default(window: QWidget, size: QSize = DEFAULT_SIZE) -> None:
    """The window at `size` (no larger than its screen), kept on the screen."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        window.resize(size)
        return
    available = screen.availableGeometry()
    window.resize(fitted_size(size, available))
    fit_window(window)

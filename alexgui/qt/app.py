"""The application around the window: the QApplication, its theme, and whether a window can open here.

`ensure_app` makes the one QApplication (and the GUI thread's garbage collection and torch settings
that must come before the window), `apply_theme` gives it the shipped look, and `has_display` /
`missing_x11_libraries` tell `alexgui gui` before Qt starts whether Qt would abort for want of a
display or of system libraries. The window itself is alexgui.qt.main_window.MainWindow.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

from pyqtgraph.util.garbage_collector import GarbageCollector
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from alexgui import __version__
from alexgui.paths import shipped
from alexgui.qt.wheel_guard import install_wheel_guard

RESOURCES = shipped("resources")


def icon(name: str) -> QIcon:
    """An icon from resources/icons; an empty one if the file is missing (the text still shows)."""
    path = RESOURCES / "icons" / f"{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()


def apply_theme(app: QApplication) -> None:
    """The style sheet from resources/; without it Qt's default look is used."""
    app.setStyle("Fusion")
    qss = RESOURCES / "style.qss"
    if qss.is_file():
        # The sheet names its arrow images as @ICONS@/x.svg: Qt resolves a relative url() against the
        # working directory, not the sheet, so the installed icons folder is filled in here.
        app.setStyleSheet(qss.read_text(encoding="utf-8").replace("@ICONS@", (RESOURCES / "icons").as_posix()))
    app.setWindowIcon(icon("alexgui"))
    install_wheel_guard(app)  # the wheel scrolls panels instead of changing unfocused fields


def ensure_app() -> QApplication:
    """The QApplication, made on first call (with this process's GC and torch settings for the GUI thread)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0]])
        app.setOrganizationName("alexgui")
        app.setApplicationName("alexgui")
        app.setApplicationVersion(__version__)
        # Python's cyclic garbage collector runs in whichever thread allocates when it triggers; in a
        # training or inference thread it would destroy Qt objects off the GUI thread and crash Qt.
        # pyqtgraph's collector turns automatic collection off and collects on a GUI-thread timer.
        _GC.append(GarbageCollector(interval=1.0))
        # Torch work on the GUI thread is small; an OpenMP pool of its own would slow the training
        # thread's (engine/training/threads.py). Before the window builds anything with torch.
        from alexgui.engine.training.threads import compute_serially_in_this_thread

        compute_serially_in_this_thread()
    assert isinstance(app, QApplication)
    return app


_GC: list[GarbageCollector] = []  # kept alive with the application


def freeze_startup_heap() -> None:
    """Exempt everything built so far (modules, torch, the window) from future garbage collections.

    The collector runs on the GUI thread (see ensure_app); a full pass over the startup heap takes
    about 50 ms there, holding the GIL that the training thread needs. The window and its panels live
    until exit anyway, so scanning them again finds nothing. Called once, after the window is built.
    """
    gc.collect()
    gc.freeze()


# -- can a window open here? ------------------------------------------------------------------


def missing_x11_libraries(env: dict[str, str] | None = None, platform: str = sys.platform) -> list[str]:
    """Shared libraries Qt's X11 plugin needs that this machine lacks (Qt would abort without them).

    Fresh Linux installs often lack some (Qt 6.5+ wants libxcb-cursor, -icccm, -keysyms, ...). Asks
    the plugin itself with ldd; without ldd, looks up the libraries Qt 6 is known to need. Only X11
    sessions are checked: Wayland, offscreen and other platforms do not use the plugin."""
    env = dict(os.environ) if env is None else env
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    uses_xcb = qpa == "xcb" or (not qpa and bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY"))
    if not platform.startswith("linux") or not uses_xcb:
        return []
    import ctypes.util
    import shutil
    import subprocess

    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if plugin.is_file() and shutil.which("ldd"):
        try:
            out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        missing = [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]
        return sorted(set(missing))
    needed = {"xcb-cursor": "libxcb-cursor.so.0", "xcb-icccm": "libxcb-icccm.so.4", "xcb-keysyms": "libxcb-keysyms.so.1",
              "xcb-image": "libxcb-image.so.0", "xcb-render-util": "libxcb-render-util.so.0",
              "xkbcommon-x11": "libxkbcommon-x11.so.0"}
    return [soname for name, soname in needed.items() if ctypes.util.find_library(name) is None]


def debian_package(soname: str) -> str:
    """libxcb-icccm.so.4 -> libxcb-icccm4, libxkbcommon-x11.so.0 -> libxkbcommon-x11-0 (Debian's naming)."""
    name, _, version = soname.partition(".so.")
    version = version.split(".")[0]
    return f"{name}{'-' if name[-1:].isdigit() else ''}{version}" if version else name


def has_display(env: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    """Whether Qt can open a window here (without one, Qt would abort the process)."""
    env = dict(os.environ) if env is None else env
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if qpa in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay", "minimalegl"):
        return True
    if not platform.startswith("linux"):
        return True
    if qpa == "xcb":
        return bool(env.get("DISPLAY"))
    if qpa.startswith("wayland"):
        return bool(env.get("WAYLAND_DISPLAY"))
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))

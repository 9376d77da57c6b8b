"""Shared test set-up: no display, a private cache folder, few threads (CI has 2 cores)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["ALEXGUI_CACHE_DIR"] = str(tmp_path_factory.mktemp("alexgui-cache"))


@pytest.fixture(autouse=True, scope="session")
def _garbage_collected_in_the_main_thread() -> Iterator[None]:
    """As in the app (alexgui.qt.app.ensure_app): no automatic cyclic collection, which could run in a
    worker thread and destroy Qt objects there (a segfault); each test's cycles are collected after it."""
    gc.disable()
    yield
    gc.enable()


@pytest.fixture(autouse=True)
def _collect_after_each_test() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_dangling_qthreads() -> Iterator[None]:
    """Fail any test that leaves a QThread running (napari does the same); Qt-free tests pay nothing."""
    yield
    if "PySide6.QtCore" not in sys.modules:
        return
    from PySide6.QtCore import QCoreApplication, QThread

    if "alexgui.qt.workers" in sys.modules:
        # Background jobs end with a `done` signal delivered by the event loop: let them finish.
        import time

        from PySide6.QtWidgets import QApplication

        from alexgui.qt.workers import running_jobs

        deadline = time.monotonic() + 5
        while running_jobs() and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)
        if running_jobs():
            pytest.fail("a worker thread was left running")

    app = QCoreApplication.instance()
    main = app.thread() if app is not None else None
    running = []
    for obj in gc.get_objects():
        # type(), not isinstance(): some objects warn when their __class__ is read.
        if issubclass(type(obj), QThread) and obj is not main:
            try:
                # A thread that is finishing gets a moment; one still running after that has leaked.
                if obj.isRunning() and not obj.wait(2000):
                    running.append(obj.objectName() or repr(obj))
            except RuntimeError:  # the C++ object is already gone
                continue
    if running:
        pytest.fail(f"test left QThread(s) running: {', '.join(running)}")


@pytest.fixture
def qt_settings(tmp_path: Path, request: pytest.FixtureRequest):  # -> alexgui.qt.settings.AppSettings
    """The app's settings in a temporary ini file, under an organisation name of this test's own."""
    from PySide6.QtCore import QSettings

    from alexgui.qt.settings import AppSettings, open_settings

    folder = tmp_path / "qsettings"
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    organization = "alexgui-test-" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:80]
    settings = AppSettings(open_settings(organization, "alexgui"))
    settings.runs_root = tmp_path / "runs"
    return settings

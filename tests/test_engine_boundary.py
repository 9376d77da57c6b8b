"""The engine must work without Qt: importing every engine module must not pull in PySide6 or pyqtgraph."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import alexgui.engine


def test_engine_imports_no_qt() -> None:
    modules = [f"alexgui.engine.{m.name}" for m in pkgutil.iter_modules(alexgui.engine.__path__)]
    modules += ["alexgui.config", "alexgui.cli", "alexgui.commands.train", "alexgui.commands.progress"]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"engine imported Qt modules: {out.stdout.strip()}"
    assert len(modules) >= 10  # the scan found the engine's modules

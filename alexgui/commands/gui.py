"""`alexgui gui` (and bare `alexgui`): open the desktop app, optionally with runs, a dataset or a model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexgui.commands.arguments import existing_folder
from alexgui.errors import AlexguiError

NO_DISPLAY = (
    "alexgui: no display found (DISPLAY and WAYLAND_DISPLAY are not set), so the window cannot open.\n"
    "Train without a window:      alexgui train --data FOLDER --out RUN_DIR   (--data demo: the built-in demo data)\n"
    "Watch a run from elsewhere:  open its folder later with  alexgui gui --run RUN_DIR\n"
    "To render off-screen anyway: QT_QPA_PLATFORM=offscreen alexgui gui"
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("gui", help="open the desktop app (the default with no command)",
                              description="Open the desktop app: train, watch and compare runs, explore models.")
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Folders are checked as they are read, before any window opens (a missing one is a one-line error).
    p.add_argument("--run", metavar="RUN_DIR", action="append", default=[], type=existing_folder,
                   help="a run folder to watch and overlay (repeat to compare several)")
    p.add_argument("--data", metavar="DIR", type=existing_folder,
                   help="an image folder to train on (one subfolder per class)")
    p.add_argument("--model", metavar="FILE_OR_RUN",
                   help="a checkpoint (.safetensors, .pt), an ONNX model, or a run folder (its best checkpoint, else its last)")


def default_args() -> argparse.Namespace:
    """What bare `alexgui` means: the app with nothing opened."""
    return argparse.Namespace(run=[], data=None, model=None)


def model_file(path: str | Path) -> Path:
    """The file `--model` names: a file as it is (the window reports one that is missing), a run folder
    its best checkpoint, else its last: the one File > Open model and the model choosers load for it.
    A folder with neither raises AlexguiError before any window opens."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return path
    from alexgui.engine.store.rundir import RunDir

    run = RunDir(path)
    for candidate in (run.best_checkpoint, run.last_checkpoint):
        if candidate.is_file():
            return candidate
    raise AlexguiError(path, f"a folder without a checkpoint (looked for {run.best_checkpoint.name} and "
                             f"{run.last_checkpoint.name} in {run.checkpoints_dir}); give a checkpoint file, "
                             "or a run folder that has saved one")


def run(args: argparse.Namespace | None = None) -> int:
    args = args if args is not None else default_args()
    from alexgui.qt.app import (
        debian_package,
        freeze_startup_heap,
        has_display,
        missing_x11_libraries,
    )

    if not has_display():
        print(NO_DISPLAY, file=sys.stderr)
        return 2
    missing = missing_x11_libraries()
    if missing:
        packages = " ".join(debian_package(m) for m in missing)
        print(f"alexgui: Qt needs system libraries for its X11 window that this machine lacks: {', '.join(missing)}.\n"
              f"Install them (Debian/Ubuntu: sudo apt install {packages}) and start alexgui again.", file=sys.stderr)
        return 2
    app, window = build(args)
    window.show()
    freeze_startup_heap()
    code = app.exec()
    window.session.shutdown()  # the window waits for its thread on close; this is the safety net
    return int(code)


def build(args: argparse.Namespace):  # -> tuple[QApplication, MainWindow]; Qt types stay out of the import
    """The application and its window with the command line's runs, dataset and model opened."""
    from PySide6.QtCore import QTimer

    from alexgui.qt.app import apply_theme, ensure_app
    from alexgui.qt.explorer import install_explorer
    from alexgui.qt.main_window import MainWindow

    model = model_file(args.model) if getattr(args, "model", None) else None  # before the window: a bad folder is an error
    app = ensure_app()
    apply_theme(app)
    window = MainWindow()
    install_explorer(window)
    for run_dir in getattr(args, "run", None) or []:
        window.open_run(Path(run_dir))
    if getattr(args, "data", None):
        window.open_dataset(Path(args.data))
    if model is not None:
        # After the event loop starts, so that whoever provides model loading has connected by then.
        QTimer.singleShot(0, lambda: window.open_model(Path(model)))
    return app, window

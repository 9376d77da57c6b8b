"""Make the screenshots in docs/ from the real app, on the built-in demo data.

    alexgui train --data demo --out /tmp/demo-run --batch-size 32 --lr 0.001 --epochs 12 --max-steps 300
    python docs/make_screenshots.py --run /tmp/demo-run

The window opens that run (its whole history), continues training it live for a few steps, and is
saved at 1280x800 and 1600x1000 with the filter grid beside the curves. Then the explorer panels are
saved one by one with the run's checkpoint: the conv1 kernels as the change since the run's
initialisation (rebuilt from its seed), classification of demo validation images (and a text file
dropped by mistake), retrieval among the validation images, and feature maps.
Runs offscreen when there is no display.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QWidget

from alexgui.commands import gui
from alexgui.engine.data.demo import ensure_demo_dataset
from alexgui.engine.model.base import CONV_LAYERS
from alexgui.engine.model.networks import build_model
from alexgui.engine.store.rundir import RunDir
from alexgui.paths import cache_dir
from alexgui.qt.settings import AppSettings, open_settings

DOCS = Path(__file__).resolve().parent


def wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        loop = QEventLoop()
        QTimer.singleShot(100, loop.quit)
        loop.exec()


def settle(ms: int = 600) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def save(widget: QWidget, name: str) -> None:
    settle()
    path = DOCS / name
    widget.grab().save(str(path))
    print(f"saved {path.relative_to(DOCS.parent)} ({widget.width()}x{widget.height()})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a demo run trained with alexgui train (see above)")
    p.add_argument("--live-steps", type=int, default=8, help="steps to train live in the window before saving it")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="alexgui-shots-"))
    run = work / args.run.name
    shutil.copytree(args.run, run)  # training continues in a copy; the original stays as it was
    settings = AppSettings(open_settings("alexgui-screenshots", "alexgui"))
    settings.runs_root = work / "runs"
    import alexgui.qt.main_window as main_window_module

    main_window_module.AppSettings = lambda: settings  # a private settings file: the user's are untouched
    app, window = gui.build(argparse.Namespace(run=[str(run)], data=None, model=None))
    window.resize(1280, 800)
    window.show()
    explorer = window.explorer
    explorer.docks["filters"].raise_()
    settle(1500)

    # Live: continue the run in the window; the filter grid follows the training thread.
    start_step = window.runs[window._current_key].history.step_count
    window.resume_selected_run()
    wait(lambda: window.runs[window._training_key].history.step_count >= start_step + args.live_steps, 900, "live steps")
    for size, name in (((1280, 800), "screenshot-training.png"), ((1600, 1000), "screenshot-training-1600x1000.png")):
        window.resize(*size)
        window.plots.refresh()
        save(window, name)
    window.session.stop()
    wait(lambda: not window.session.is_running, 300, "the run to stop")
    window.resize(1280, 800)

    # The explorer with the run's checkpoint.
    explorer.load_model(str(run))
    wait(lambda: explorer.classify.predictor is not None, 300, "the model to load")
    # What the run learned: the same seed rebuilds its initial weights, the grid's first snapshot.
    cfg = RunDir.open(run).config()
    torch.manual_seed(cfg.train.seed)
    initial = build_model(cfg.model)
    explorer.filters.set_kernels({n: initial.kernels(n) for n in CONV_LAYERS}, reset_history=True)
    explorer.filters.set_model(explorer.classify.predictor.model)
    explorer.filters.show_change.setChecked(True)
    explorer.docks["filters"].raise_()
    save(explorer.filters, "screenshot-filters.png")
    explorer.filters.show_change.setChecked(False)

    demo = ensure_demo_dataset(cache_dir())
    val = sorted((demo / "val").iterdir())
    picks = [sorted(val[i].iterdir())[0] for i in (0, 3, 7)]
    mistake = work / "shopping list.txt"
    mistake.write_text("eggs, milk")
    explorer.docks["classify"].raise_()
    explorer.classify.classify_paths([*picks, mistake])
    wait(lambda: not explorer.classify.is_busy(), 300, "classification")
    save(explorer.classify, "screenshot-classify.png")

    explorer.docks["feature_maps"].raise_()
    explorer.feature_maps.set_image(str(picks[0]))
    wait(lambda: explorer.feature_maps.layer != "", 300, "feature maps")
    settle(2000)
    save(explorer.feature_maps, "screenshot-feature-maps.png")

    explorer.docks["retrieval"].raise_()
    explorer.retrieval.set_gallery(demo / "val", work / "index")
    explorer.retrieval.build()
    wait(lambda: not explorer.retrieval.is_busy(), 600, "the gallery index")
    explorer.retrieval.query(str(sorted(val[5].iterdir())[1]))
    wait(lambda: not explorer.retrieval.is_busy(), 300, "the query")
    save(explorer.retrieval, "screenshot-retrieval.png")

    explorer.shutdown()
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())

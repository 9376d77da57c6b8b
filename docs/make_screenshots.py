"""Make the screenshots in docs/ from the real app, on the built-in demo data.

    alexgui train --data demo --out /tmp/demo-run --max-steps 120   # the quick preset: about 5 minutes on 2 cores
    python docs/make_screenshots.py --run /tmp/demo-run

The window opens that run (its whole history), continues training it live for a few steps, and is
saved at 1280x800 and 1600x1000 with the filter grid beside the curves. Then the explorer panels are
saved one by one with the run's checkpoint: the conv1 kernels (the run's initialisation, rebuilt from
its seed, as the history's first snapshot), classification of demo validation images (and a text file
dropped by mistake), retrieval among the validation images, and feature maps. Then the Experiments
window with the report shipped in docs/experiments/cpu-demo (its Curves and its Report tab), and last
the Evaluation window on the run's validation images, its most confused cell open.
Runs offscreen when there is no display, on a 1600x1000 offscreen screen (Qt's default offscreen
screen is 800x600, and the window keeps itself inside its screen).

    python docs/make_screenshots.py --layout-only

saves only the layout check (no run needed): the window at 1280x800 with two runs, a long error and
each dock in front in turn, then after View > Reset layout, into /tmp/alexgui-layout/ (not docs/).

    python docs/make_screenshots.py --finetune-only [--data PHOTOS]

saves only the window with the Training form set for "My photos (quick)" (docs/screenshot-finetune.png).

    python docs/make_screenshots.py --run /tmp/demo-run --inside-only --images PHOTOS

saves the Filters panel with its history slider at an early frame (docs/screenshot-filter-history.png),
one frame of that history (docs/filter-history-frame.png), the Top images window of the conv5 unit
whose strongest patch among PHOTOS responds most (docs/screenshot-top-images.png), and the fc7 map
of the demo's validation images indexed with the run's model, one image clicked
(docs/screenshot-feature-space.png).

    python docs/make_screenshots.py --run /tmp/demo-run --explain-only [--photo-run RUN --photo IMAGE]

saves only the Explain window: Explain pressed on a Classify card of a demo validation image with the
run's model (docs/screenshot-explain.png), and with --photo-run and --photo, a real photograph with a
model trained on photographs (docs/screenshot-explain-photo.png, occlusion). The full run (without
--explain-only) saves the first of these too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and "QT_QPA_PLATFORM" not in os.environ:
    # Qt's offscreen screen is 800x600 unless a config file says otherwise; write_screen_config() writes it.
    os.environ["QT_QPA_PLATFORM"] = "offscreen:configfile=" + os.path.join(tempfile.gettempdir(), "alexgui-shots-screen.json")

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
SCREEN = (1600, 1000)  # the offscreen screen: room for the largest screenshot


def write_screen_config() -> None:
    """The offscreen screen's size, read by Qt when the application starts."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform.startswith("offscreen:configfile="):
        Path(platform.split("=", 1)[1]).write_text(json.dumps({"screens": [{
            "name": "shots", "x": 0, "y": 0, "width": SCREEN[0], "height": SCREEN[1],
            "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))  # fmt: skip


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
    """Save a picture of the widget as docs/NAME (or at NAME when it is an absolute path)."""
    settle()
    path = DOCS / name
    widget.grab().save(str(path))
    print(f"saved {path} ({widget.width()}x{widget.height()})")


def layout_check(app, window, work: Path, out: Path) -> None:  # type: ignore[no-untyped-def]
    """The window at 1280x800 with two runs, a long error and each dock in front; then Reset layout."""
    from PySide6.QtWidgets import QDockWidget

    from alexgui.config import RunConfig
    from alexgui.engine.events import RunStarted, StepDone

    out.mkdir(parents=True, exist_ok=True)
    for name in ("20261129-134500-a-dataset-with-a-long-folder-name", "20261129-134501-another-long-run-name"):
        run = RunDir.create(work / name, RunConfig())
        run.append(RunStarted(0, 0, device="cpu", arch="paper", num_classes=3, class_names=["a", "b", "c"],
                              train_images=40, val_images=10, steps_per_epoch=10, epochs=5))
        for i in range(1, 31):
            run.append(StepDone(i, 0, batch=i % 10, batches=10, loss=2.0 - 0.03 * i, top1_err=0.8, top5_err=0.4,
                                lr=0.01, images_per_s=50.0))
        run.close()
        window.open_run(run.path)
    window.show_error("Cannot open model", "not on this computer: " + "a long message without a break " * 10)
    settle()
    window.grab().save(str(out / "window.png"))
    for dock in window.findChildren(QDockWidget):
        dock.show()
        dock.raise_()
        settle(300)
        window.grab().save(str(out / f"window-{dock.objectName()}.png"))
        print(f"{dock.objectName()}: window {window.width()}x{window.height()}")
    window.act_reset_layout.trigger()
    settle()
    window.grab().save(str(out / "window-after-reset.png"))
    print(f"after Reset layout: window {window.width()}x{window.height()}; pictures in {out}")


def experiments_shot(explorer, work: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """The Experiments window with the report shipped in docs/experiments/cpu-demo."""
    shipped = DOCS / "experiments" / "cpu-demo" / "relu-vs-tanh"
    shutil.copytree(shipped, work / "experiments" / "relu-vs-tanh", dirs_exist_ok=True)
    panel = explorer.experiments
    panel.out_root.setText(str(work / "experiments"))
    panel.set_experiment("relu-vs-tanh")
    panel.show_saved_report()
    explorer.experiments_window.show_window()
    save(explorer.experiments_window, name)
    panel.open_report()
    save(explorer.experiments_window, name.replace(".png", "-report.png"))


def evaluation_shot(explorer, run: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """The Evaluation window after "Evaluate this run": the run's validation images, one confusion cell open."""
    explorer.evaluate_run(run)
    panel = explorer.evaluation
    wait(lambda: panel.report is not None and not panel.is_busy(), 900, "the evaluation")
    matrix = panel.confusion.matrix.copy()
    for i in range(len(matrix)):
        matrix[i, i] = -1
    row, col = divmod(int(matrix.argmax()), len(matrix))  # the most confused pair of classes
    panel.show_cell(row, col)
    panel.confusion.selected = (row, col)
    panel.confusion.update()
    save(explorer.evaluation_window, name)


def confident_demo_image(predictor) -> Path:  # type: ignore[no-untyped-def]
    """Of the first validation image of each demo class, the one the model classifies right most surely."""
    from alexgui.engine.data.imageio import load_256

    demo = ensure_demo_dataset(cache_dir())
    best, best_p = None, -1.0
    for folder in sorted((demo / "val").iterdir()):
        image = sorted(folder.iterdir())[0]
        probs, _ = predictor.predict_u8(load_256(image)[None])
        names = predictor.class_names
        if folder.name in names and probs[0].argmax() == names.index(folder.name) and probs[0].max() > best_p:
            best, best_p = image, float(probs[0].max())
    return best or sorted(sorted((demo / "val").iterdir())[0].iterdir())[0]


def explain_shot(explorer, image: Path, name: str, method: str = "gradcam") -> None:  # type: ignore[no-untyped-def]
    """Classify one image, press its card's Explain button, pick `method`, save the Explain window."""
    explorer.classify.clear()
    explorer.classify.classify_paths([image])
    wait(lambda: not explorer.classify.is_busy() and explorer.classify.card_widgets(), 300, "classification")
    explorer.classify.card_widgets()[0].explain_button.click()
    panel = explorer.explain
    wait(lambda: panel.explanation is not None and not panel.is_busy(), 300, "the explanation")
    if method != "gradcam":
        panel.method.setCurrentIndex(panel.method.findData(method))
        wait(lambda: not panel.is_busy() and panel.explanation.method == method, 300, f"the {method} map")
    save(explorer.explain_window, name)


def inside_shots(run: Path, images: Path, layer: str = "conv5") -> int:
    """Inside the network, with the run's model: the Filters panel with its history slider at an early
    frame; the Top images window of the `layer` unit whose top patch responds most, over `images`; and
    one frame of the filter history as `alexgui filters` writes it."""
    from alexgui.engine.store.filter_history import snapshots
    from alexgui.engine.understand.filter_animation import save_png
    from alexgui.engine.understand.top_units import top_images

    work = Path(tempfile.mkdtemp(prefix="alexgui-shots-"))
    write_screen_config()
    settings = AppSettings(open_settings("alexgui-screenshots", "alexgui"))
    settings.runs_root = work / "runs"
    import alexgui.qt.main_window as main_window_module

    main_window_module.AppSettings = lambda: settings
    app, window = gui.build(argparse.Namespace(run=[], data=None, model=None))
    window.resize(1280, 800)
    window.show()
    explorer = window.explorer
    explorer.load_model(str(run))
    wait(lambda: explorer.classify.predictor is not None, 300, "the model to load")
    explorer.docks["filters"].raise_()
    bar = explorer.filters.history
    wait(lambda: bar.slider.maximum() > 0, 30, "the run's filter history")
    bar.slider.setValue(max(1, bar.slider.maximum() // 4))
    save(explorer.filters, "screenshot-filter-history.png")
    bar.slider.setValue(bar.slider.maximum())
    refs = snapshots(run)
    save_png(refs[min(len(refs) - 1, max(1, len(refs) // 3))], DOCS / "filter-history-frame.png")
    print(f"saved {DOCS / 'filter-history-frame.png'}")

    predictor = explorer.torch_model()
    tops = top_images(predictor, images, layer, k=9, cache=cache_dir())
    unit = int(tops.values[:, 0].argmax())
    explorer.units.panel.set_gallery(images)
    explorer.units._chosen = str(images)
    explorer.units.show_unit(layer, unit)
    panel = explorer.units.panel
    wait(lambda: "drive it most" in panel.title.text(), 600, "the top images")
    panel.show_whole(0)
    save(explorer.units.window, "screenshot-top-images.png")

    # The fc7 map of the demo's validation images, indexed with the run's model, one image clicked.
    demo = ensure_demo_dataset(cache_dir())
    explorer.docks["retrieval"].raise_()
    explorer.retrieval.set_gallery(demo / "val", work / "index")
    explorer.retrieval.build()
    wait(lambda: not explorer.retrieval.is_busy() and explorer.retrieval.index is not None, 600, "the gallery index")
    explorer.retrieval.map_button.click()
    space = explorer.space.panel
    with_map = lambda: space.map is not None and not space.is_busy()  # noqa: E731
    if space.map is None:
        space.compute_button.click()
    wait(with_map, 600, "the t-SNE map")
    space.select(len(space.map.paths) // 3)
    wait(lambda: space.details is not None, 120, "the clicked image's neighbours")
    settle(1500)
    save(explorer.space.window, "screenshot-feature-space.png")
    explorer.shutdown()
    window.close()
    app.processEvents()
    return 0


def finetune_shot(data: Path | None) -> int:
    """The window at 1280x800 with the Training form set for "My photos (quick)" on `data`. Without
    torchvision's weights in torch's hub cache (this machine cannot download them), a stand-in file of
    their shapes is written to a temporary hub and the registry's checksum set to it for this process:
    the form shows only what it reads from the file's name and the network's shapes."""
    import dataclasses

    from alexgui.engine.model import zoo
    from alexgui.engine.model.torchvision_alexnet import TorchvisionAlexNet

    work = Path(tempfile.mkdtemp(prefix="alexgui-shots-"))
    entry = zoo.default_entry()
    if zoo.find_weights(entry) is None:
        hub = work / "hub"
        hub.mkdir()
        torch.save(TorchvisionAlexNet(num_classes=1000).state_dict(), hub / entry.filename)
        stand_in = dataclasses.replace(entry, sha256=zoo.sha256_file(hub / entry.filename))
        zoo.hub_checkpoints_dir = lambda: hub  # type: ignore[assignment]
        zoo.default_entry = lambda: stand_in  # type: ignore[assignment]
        print("torchvision's weights are not in the hub cache: a stand-in of their shapes is used for the screenshot")
    write_screen_config()
    settings = AppSettings(open_settings("alexgui-screenshots", "alexgui"))
    settings.store.clear()
    settings.runs_root = work / "runs"
    import alexgui.qt.main_window as main_window_module

    main_window_module.AppSettings = lambda: settings
    app, window = gui.build(argparse.Namespace(run=[], data=None, model=None))
    window.resize(1280, 800)
    window.show()
    form = window.monitor.form
    if data is not None:
        form.set_dataset(str(data.resolve()))
    form.preset.setCurrentIndex(form.preset.findData("photos"))
    settle(300)
    group = form.start_from.source.parentWidget()  # the Start from group at the top, the preset below it
    window.monitor.scroll.verticalScrollBar().setValue(group.y() - 4)
    settle(500)
    save(window, "screenshot-finetune.png")
    window.explorer.shutdown()
    window.close()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="a demo run trained with alexgui train (see above)")
    p.add_argument("--live-steps", type=int, default=8, help="steps to train live in the window before saving it")
    p.add_argument("--layout-only", action="store_true", help="only the layout check, into /tmp/alexgui-layout")
    p.add_argument("--explain-only", action="store_true", help="only the Explain window's screenshots")
    p.add_argument("--photo-run", type=Path, help="with --explain-only: a run trained on photographs")
    p.add_argument("--photo", type=Path, help="with --photo-run: the photograph to explain")
    p.add_argument("--finetune-only", action="store_true",
                   help="only the training form set for 'My photos (quick)' (no run needed; --data: the photos folder)")
    p.add_argument("--data", type=Path, help="with --finetune-only: the dataset the form shows")
    p.add_argument("--inside-only", action="store_true",
                   help="only the filter history and a conv5 unit's top images (--run, --images: a folder of photos)")
    p.add_argument("--images", type=Path, help="with --inside-only: the folder searched for the unit's top images")
    args = p.parse_args()
    if args.finetune_only:
        return finetune_shot(args.data)
    if args.inside_only:
        if args.run is None or args.images is None:
            p.error("--inside-only needs --run and --images")
        return inside_shots(args.run, args.images)
    if args.run is None and not args.layout_only:
        p.error("--run is required (or --layout-only)")

    work = Path(tempfile.mkdtemp(prefix="alexgui-shots-"))
    write_screen_config()
    if args.layout_only:
        settings = AppSettings(open_settings("alexgui-screenshots", "alexgui"))
        settings.store.clear()  # a first launch
        settings.runs_root = work / "runs"
        import alexgui.qt.main_window as main_window_module

        main_window_module.AppSettings = lambda: settings
        app, window = gui.build(argparse.Namespace(run=[], data=None, model=None))
        window.show()
        window.resize(1280, 800)
        out = Path(tempfile.gettempdir()) / "alexgui-layout"
        layout_check(app, window, work, out)
        experiments_shot(window.explorer, work, str(out / "experiments.png"))
        window.explorer.shutdown()
        window.close()
        return 0

    if args.explain_only:
        settings = AppSettings(open_settings("alexgui-screenshots", "alexgui"))
        settings.runs_root = work / "runs"
        import alexgui.qt.main_window as main_window_module

        main_window_module.AppSettings = lambda: settings
        app, window = gui.build(argparse.Namespace(run=[], data=None, model=None))
        window.resize(1280, 800)
        window.show()
        explorer = window.explorer
        explorer.load_model(str(args.run))
        wait(lambda: explorer.classify.predictor is not None, 300, "the model to load")
        explain_shot(explorer, confident_demo_image(explorer.classify.predictor), "screenshot-explain.png")
        if args.photo_run is not None and args.photo is not None:
            explorer.load_model(str(args.photo_run))
            wait(lambda: explorer.classify.predictor is not None
                 and str(args.photo_run.name) in explorer.classify.predictor.source, 300, "the photo model to load")
            explain_shot(explorer, args.photo, "screenshot-explain-photo.png", method="occlusion")
        explorer.shutdown()
        window.close()
        return 0

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
    initial.start_conv1_at(cfg.train.conv1_init_std)  # as training started it (engine/training/setup.py)
    explorer.filters.set_kernels({n: initial.kernels(n) for n in CONV_LAYERS}, reset_history=True)
    explorer.filters.set_model(explorer.classify.predictor.model)
    explorer.docks["filters"].raise_()
    save(explorer.filters, "screenshot-filters.png")

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

    experiments_shot(explorer, work, "screenshot-experiments.png")
    evaluation_shot(explorer, run, "screenshot-evaluation.png")
    explain_shot(explorer, confident_demo_image(explorer.classify.predictor), "screenshot-explain.png")

    explorer.shutdown()
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())

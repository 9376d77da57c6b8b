"""The main window: first launch, settings round trip, docks, drops, hooks, the gui command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel

from alexgui.commands import gui
from alexgui.config import RunConfig
from alexgui.engine.events import EpochDone, Paused, RunStarted, StepDone
from alexgui.engine.training.history import RunHistory
from alexgui.engine.training.narrative import describe_event
from alexgui.formatting import format_duration
from alexgui.qt.app import has_display
from alexgui.qt.main_window import MainWindow
from alexgui.qt.panels.monitor import PRESETS
from alexgui.qt.session import run_dir_name
from alexgui.qt.settings import MAX_RECENT, AppSettings, open_settings
from tests.helpers import make_image
from tests.test_qt_panels import drop


@pytest.fixture
def window(qtbot, qt_settings: AppSettings) -> MainWindow:
    w = MainWindow(qt_settings, devices=[("cpu", "CPU"), ("cuda:0", "GPU 0: Test GPU")])
    qtbot.addWidget(w)
    return w


def test_first_launch_selects_the_demo_with_the_papers_optimiser_and_a_quick_amount_of_work(window: MainWindow) -> None:
    cfg = window.monitor.form.config()
    assert cfg.data.data == "demo"
    assert window.monitor.form.dataset.currentText() == "Built-in demo dataset"
    quick = PRESETS[0]
    # the paper's momentum and weight decay; the quick preset's learning rate suits 10 classes (see PRESETS)
    assert (cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay) == (quick.lr, 0.9, 0.0005) == (0.001, 0.9, 0.0005)
    assert "0.01 is tuned for 1000 classes" in window.monitor.form.preset_note.text()
    assert (cfg.train.epochs, cfg.train.batch_size) == (quick.epochs, quick.batch_size)
    assert "batch 32" in window.monitor.form.preset_note.text()  # the UI says what differs from the paper
    assert cfg.model == RunConfig().model and cfg.data.pca_noise == 0.1
    assert window.act_start.isEnabled() and not window.act_stop.isEnabled()
    assert window.plots.placeholder.isVisibleTo(window.plots)


def test_the_form_covers_the_ablation_switches_and_devices(window: MainWindow) -> None:
    form = window.monitor.form
    form.lrn.setChecked(False)
    form.overlapping.setChecked(False)
    form.activation.setCurrentIndex(form.activation.findData("tanh"))
    form.dropout.setChecked(False)
    form.pca_noise.setChecked(False)
    form.device.setCurrentIndex(1)
    cfg = form.config()
    assert (cfg.model.lrn, cfg.model.pooling, cfg.model.activation, cfg.model.dropout) == (False, "non-overlapping", "tanh", 0.0)
    assert cfg.data.pca_noise == 0.0 and cfg.train.device == "cuda:0"
    form.preset.setCurrentIndex(form.preset.findData("paper"))
    assert (form.config().train.epochs, form.config().train.batch_size) == (90, 128)
    form.epochs.setValue(3)
    assert form.preset_name == "custom"
    # Fields the form does not show pass through unchanged.
    hidden = form.config()
    hidden.model.lrn_formula = "torch"
    hidden.train.seed = 7
    form.set_config(hidden)
    assert form.config() == hidden


def test_settings_round_trip(qt_settings: AppSettings, tmp_path: Path) -> None:
    for i in range(MAX_RECENT + 3):
        qt_settings.add_recent("run", tmp_path / f"run{i}")
    qt_settings.add_recent("run", tmp_path / "run5")
    cfg = RunConfig()
    cfg.train.epochs = 17
    cfg.model.lrn = False
    qt_settings.last_config = cfg
    qt_settings.runs_root = tmp_path / "elsewhere"
    qt_settings.sync()

    again = AppSettings(open_settings(qt_settings.store.organizationName(), "alexgui"))
    assert again.path == qt_settings.path and Path(again.path).is_relative_to(tmp_path)
    runs = again.recent("run")
    assert len(runs) == MAX_RECENT and runs[0] == str(tmp_path / "run5") and runs.count(str(tmp_path / "run5")) == 1
    assert again.last_config == cfg
    assert again.runs_root == tmp_path / "elsewhere"
    again.clear_recent()
    assert again.recent("run") == []
    with pytest.raises(ValueError, match="unknown recent-item kind"):
        again.recent("photos")


def test_an_unreadable_saved_config_falls_back_to_the_defaults(qt_settings: AppSettings) -> None:
    qt_settings.store.setValue("train/config_toml", "[train]\nepochs = 'many'\n")
    assert qt_settings.last_config is None


def test_the_window_remembers_its_form_geometry_and_docks(qtbot, qt_settings: AppSettings) -> None:
    first = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(first)
    first.show()
    first.resize(760, 560)  # inside the offscreen screen (800x600), which clamps bigger windows
    size = (first.width(), first.height())  # what the window took (its minimum width can exceed 760)
    first.log_dock.hide()
    first.monitor.form.epochs.setValue(33)
    first.close()

    second = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(second)
    second.show()
    assert second.monitor.form.epochs.value() == 33
    assert second.log_dock.isHidden() and not second.runs_dock.isHidden()
    assert (second.width(), second.height()) == size
    second.reset_layout()
    assert not second.log_dock.isHidden()


def test_panels_dock_tabbed_and_appear_in_the_view_menu(window: MainWindow) -> None:
    filters = window.add_panel("Filters", QLabel("conv1"), object_name="filtersDock")
    classify = window.add_panel("Classify", QLabel("drop images"), object_name="classifyDock")
    assert window.dockWidgetArea(filters) == Qt.DockWidgetArea.RightDockWidgetArea
    assert classify in window.tabifiedDockWidgets(filters)
    titles = [a.text() for a in window.view_menu.actions()]
    assert "Filters" in titles and "Classify" in titles


def test_files_dropped_anywhere_reach_the_files_dropped_signal(qtbot, window: MainWindow, tmp_path: Path) -> None:
    images = [tmp_path / "cat.jpg", tmp_path / "dog.png"]
    for p in images:
        p.write_bytes(b"x")
    received: list[list[Path]] = []
    window.files_dropped.connect(received.append)
    window.show()
    drop(window, images, must_accept=False)
    assert received == [images]


def test_a_dropped_folder_becomes_the_dataset_when_no_panel_takes_drops(qtbot, window: MainWindow, tmp_path: Path) -> None:
    folder = tmp_path / "my-photos"
    for c in ("cats", "dogs"):  # a dataset is checked when chosen (tests/test_qt_frictions.py)
        (folder / c).mkdir(parents=True)
        make_image(0, seed=0, size=(32, 32)).save(folder / c / "0.png")
    drop(window, [folder], must_accept=False)
    qtbot.waitUntil(lambda: window.monitor.form.config().data.data == str(folder), timeout=20_000)
    assert window.settings.recent("dataset") == [str(folder)]


def test_export_and_model_hooks_reach_their_signals(qtbot, window: MainWindow, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    opened: list[Path] = []
    window.model_open_requested.connect(opened.append)
    assert window.open_model(model) is True
    assert opened == [model] and window.settings.recent("model") == [str(model)]
    exported: list[bool] = []
    window.export_requested.connect(lambda: exported.append(True))
    window.act_export.trigger()
    assert exported == [True]
    assert window.open_model(tmp_path / "missing.onnx") is False
    assert "missing.onnx" in window.last_error


def test_common_actions_have_shortcuts(window: MainWindow) -> None:
    for action in (window.act_start, window.act_pause, window.act_stop, window.act_save, window.act_open_dataset,
                   window.act_open_run, window.act_open_model, window.act_quit):
        assert not action.shortcut().isEmpty(), action.text()


def test_pause_turning_into_resume_moves_nothing(window: MainWindow) -> None:
    """The toolbar's and the training dock's Pause buttons keep one width, so the dock, and the plots
    beside it, do not narrow when training pauses (a legend was clipped at 1280x800)."""
    window.resize(1280, 800)
    window.show()
    buttons = [window.toolbar.widgetForAction(window.act_pause), window.monitor.buttons["pause"]]

    def least_widths() -> list[int]:
        return [max(b.minimumWidth(), b.minimumSizeHint().width()) for b in buttons]

    pausing = least_widths()
    window.act_pause.setText("Resume")
    QApplication.processEvents()
    assert least_widths() == pausing
    assert all(b.minimumWidth() >= b.sizeHint().width() for b in buttons)


def test_the_status_bar_shows_the_device_and_state(window: MainWindow, monkeypatch) -> None:
    from alexgui.engine.training import precision

    assert window.device_label.text() == "Device: GPU 0: Test GPU"  # the best device offered, preselected
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)  # the same answer on every machine
    window.monitor.form.device.setCurrentIndex(0)
    assert window.device_label.text() == "Device: CPU · bf16"  # the CPU's default arithmetic shown
    window.monitor.form.bf16.click()
    assert window.device_label.text() == "Device: CPU"
    assert window.state_label.text() == "Idle"


def test_gui_command_without_a_display_points_to_alexgui_train(monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert gui.run(gui.default_args()) == 2
    err = capsys.readouterr().err
    assert "no display" in err and "alexgui train --data FOLDER --out RUN_DIR" in err


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({}, "linux", False),
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux", True),
        ({"QT_QPA_PLATFORM": "xcb"}, "linux", False),
        ({"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"}, "linux", False),
        ({}, "darwin", True),
        ({}, "win32", True),
    ],
)
def test_has_display(env: dict[str, str], platform: str, expected: bool) -> None:
    assert has_display(env, platform) is expected


def test_gui_parser_and_build_open_runs_and_data(qtbot, qt_settings: AppSettings, tmp_path: Path, monkeypatch) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    gui.add_parser(sub)
    data = tmp_path / "data"
    for c in ("a", "b"):  # a dataset is checked when chosen: an empty folder would be refused
        (data / c).mkdir(parents=True)
        make_image(0, seed=0, size=(32, 32)).save(data / c / "0.png")
    from alexgui.engine.store.rundir import RunDir

    runs = [RunDir.create(tmp_path / name, RunConfig()).path for name in ("a", "b")]
    args = parser.parse_args(["gui", "--run", str(runs[0]), "--run", str(runs[1]), "--data", str(data)])
    assert args.func is gui.run and args.run == [str(r) for r in runs]
    monkeypatch.setattr("alexgui.qt.main_window.AppSettings", lambda: qt_settings)
    _, window = gui.build(args)
    qtbot.addWidget(window)
    assert [e.path for e in window.runs.values()] == [r.resolve() for r in runs]
    qtbot.waitUntil(lambda: window.monitor.form.config().data.data == str(data), timeout=20_000)


def test_run_history_eta_and_names() -> None:
    h = RunHistory("r")
    h.add([RunStarted(0, 0, device="cpu", arch="paper", num_classes=2, class_names=["a", "b"], train_images=40,
                      val_images=4, steps_per_epoch=10, epochs=2, time=100.0)])
    h.add([StepDone(i, 0, batch=i, batches=10, loss=1.0, top1_err=0.5, top5_err=0.0, lr=0.01, images_per_s=4.0,
                    time=100.0 + 2 * i) for i in range(1, 6)])
    epoch_left, run_left = h.eta()
    assert epoch_left == pytest.approx(10.0) and run_left == pytest.approx(30.0)  # 2 s/step, 5 + 10 steps left
    h.max_steps = 8
    assert h.eta()[1] == pytest.approx(6.0)
    h.add([Paused(5, 0)])
    assert h.eta() == (None, None) and h.state == "paused"
    assert format_duration(3725) == "1:02:05" and format_duration(None) == "–"
    cfg = RunConfig()
    assert run_dir_name(cfg, now=0).endswith("-demo")
    cfg.data.data = "/data/my photos!"
    assert run_dir_name(cfg, now=0).endswith("-my_photos")


def test_log_lines_for_events() -> None:
    epoch = EpochDone(30, 2, train_loss=1.0, train_top1_err=0.4, train_top5_err=0.1, val_loss=1.1, val_top1_err=0.45,
                      val_top5_err=0.125, lr=0.01, seconds=9.6)
    [(level, text)] = describe_event(epoch)
    assert level == "info" and "Epoch 3" in text and "top-1 45.0%" in text and "top-5 12.5%" in text
    assert describe_event(StepDone(1, 0, batch=1, batches=2, loss=1, top1_err=1, top5_err=1, lr=0.1, images_per_s=1)) == []


def test_decimation_keeps_peaks_and_the_newest_point() -> None:
    import numpy as np

    from alexgui.qt.plots import decimate

    x = np.arange(10_000, dtype=float)
    y = np.sin(x / 50.0)
    y[1234] = 9.0  # a loss spike must survive decimation
    px, py = decimate(x, y, max_points=800, peaks=True)
    assert len(px) <= 810 and py.max() == 9.0 and py.min() == pytest.approx(-1.0, abs=1e-3)
    assert np.all(np.diff(px) >= 0)
    sx, sy = decimate(x, y, max_points=800)
    assert len(sx) <= 801 and sx[-1] == x[-1]
    short = np.arange(5.0)
    assert decimate(short, short)[0] is short


def test_plots_draw_news_one_plot_at_a_time(qtbot, window: MainWindow) -> None:
    h = RunHistory("r")
    h.add([StepDone(1, 0, batch=1, batches=10, loss=2.0, top1_err=0.9, top5_err=0.5, lr=0.01, images_per_s=5.0)])
    entry = window.registry.add(h, None, "trained here")
    window.refresh_views()
    assert len(window.plots.curve(entry.key, "loss").getData()[0]) == 1  # a new run is drawn at once
    h.add([StepDone(2, 0, batch=2, batches=10, loss=1.9, top1_err=0.9, top5_err=0.5, lr=0.01, images_per_s=5.0)])
    window.refresh_views()
    lengths = [len(window.plots.curve(entry.key, s).getData()[0]) for s in ("loss", "top1_smooth", "lr", "ips")]
    assert lengths.count(2) == 1 and window.plots.pending  # the rest follow on the timer
    qtbot.waitUntil(lambda: not window.plots.pending, timeout=2_000)
    assert [len(window.plots.curve(entry.key, s).getData()[0]) for s in ("loss", "top1_smooth", "lr", "ips")] == [2] * 4


def test_sticky_range_holds_still_while_the_data_grows_inside_it() -> None:
    from alexgui.qt.plots import nice_ceiling, sticky_range

    assert [nice_ceiling(v) for v in (0.7, 1.0, 1.3, 2.2, 3.0, 7.0, 130.0)] == [1.0, 1.0, 2.0, 2.5, 5.0, 10.0, 200.0]
    first = sticky_range(None, (1.0, 100.0, 1.0, 2.0))
    assert first[:2] == (1.0, 201.0)  # room to grow: a round number about 1.3 times as far
    assert first[2] < 1.0 and first[3] > 2.0
    # New steps and a slowly falling loss inside the range: nothing moves, so the axes need no repaint.
    assert sticky_range(first, (1.0, 150.0, 0.9, 2.0)) == first
    # The data leaves the range: x grows to a new round number, y takes the new low with a margin.
    grown = sticky_range(first, (1.0, 260.0, 0.5, 2.0))
    assert grown[1] == 501.0 and grown[2] < 0.5 and grown[3] > 2.0
    # Data that fills too little of the range (a shorter run shown instead) gets a fitted range again.
    assert sticky_range(grown, (1.0, 20.0, 1.9, 2.0))[1] == 26.0
    flat = sticky_range(None, (1.0, 1.0, -2.0, -2.0), log_y=True)  # one learning rate, in log10
    assert flat[2] == pytest.approx(-2.15) and flat[3] == pytest.approx(-1.85)


def test_live_plots_keep_their_axes_while_steps_arrive_and_fit_the_data_after(qtbot, window: MainWindow) -> None:
    h = RunHistory("r")
    entry = window.registry.add(h, None, "trained here")

    def step(i: int, loss: float) -> StepDone:
        return StepDone(i, 0, batch=i, batches=100, loss=loss, top1_err=0.9, top5_err=0.5, lr=0.01, images_per_s=5.0)

    plots = window.plots  # driven directly: with no training session the window would not be live
    plots.set_live(True)
    h.add([step(i, 1.9 + 0.2 * (i % 2)) for i in range(1, 41)])
    plots.set_runs([(entry.key, h, entry.color)])
    view = plots.loss_plot.getViewBox()
    before = view.viewRange()
    assert before[0][1] > 45  # the step axis reaches beyond the data
    for i in range(41, 51):
        h.add([step(i, 1.9 + 0.2 * (i % 2))])
        plots.set_runs([(entry.key, h, entry.color)])
        plots.refresh()
        assert view.viewRange() == before
    assert len(plots.curve(entry.key, "loss").getData()[0]) == 50  # the curves still took every step
    plots.set_live(False)
    assert view.viewRange()[0][1] < before[0][1]  # a finished run fills the plot


def test_missing_x11_library_is_named_before_qt_aborts(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import shutil
    import subprocess

    from alexgui.qt import app as app_module

    ldd = "\tlibxcb.so.1 => /lib/libxcb.so.1\n\tlibxcb-icccm.so.4 => not found\n\tlibxkbcommon-x11.so.0 => not found\n"
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/ldd")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=ldd, stderr=""))
    x11 = {"DISPLAY": ":0"}
    assert app_module.missing_x11_libraries(x11, "linux") == ["libxcb-icccm.so.4", "libxkbcommon-x11.so.0"]
    assert app_module.missing_x11_libraries({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "linux") == []
    assert app_module.missing_x11_libraries({"QT_QPA_PLATFORM": "offscreen"}, "linux") == []
    assert app_module.missing_x11_libraries(x11, "darwin") == []
    assert app_module.debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert app_module.debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    monkeypatch.setattr(app_module, "has_display", lambda: True)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    assert gui.run(gui.default_args()) == 2
    assert "sudo apt install libxcb-icccm4 libxkbcommon-x11-0" in capsys.readouterr().err


def test_open_recent_lists_each_kind_and_opens_what_is_clicked(window: MainWindow, tmp_path: Path) -> None:
    menu = window.recent_menu
    window.settings.clear_recent()
    menu.aboutToShow.emit()
    assert [a.text() for a in menu.actions()] == ["No recent items"] and not menu.actions()[0].isEnabled()
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    window.settings.add_recent("model", model)
    window.settings.add_recent("dataset", tmp_path)
    menu.aboutToShow.emit()
    texts = [a.text() for a in menu.actions() if not a.isSeparator() or a.text()]
    assert texts == ["Datasets", str(tmp_path), "Models", str(model), "Clear recent items"]
    opened: list[Path] = []
    window.model_open_requested.connect(opened.append)
    next(a for a in menu.actions() if a.text() == str(model)).trigger()
    assert opened == [model]
    next(a for a in menu.actions() if a.text() == "Clear recent items").trigger()
    assert window.settings.recent("model") == [] and window.settings.recent("dataset") == []

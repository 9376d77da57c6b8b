"""The Filters panel's history slider: past frames, live kernels kept meanwhile, Play, Save animation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from alexgui.engine.store.filter_history import write_snapshot
from alexgui.qt.panels.filters import FiltersPanel

TOWERS = [0] * 48 + [1] * 48


def kernels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.01, (96, 3, 11, 11)).astype(np.float32)


def run_with_history(root: Path, steps: list[int]) -> Path:
    for step in steps:
        write_snapshot(root, step, 0, kernels(step), TOWERS)
    return root


def test_the_slider_shows_past_frames_and_returns_to_the_live_kernels(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.resize(380, 700)
    panel.show()
    live = kernels(999)
    panel.set_kernels(live)
    panel.set_history_run(run_with_history(tmp_path, [0, 10, 20, 30, 40]))
    bar = panel.history
    assert (bar.slider.minimum(), bar.slider.maximum(), bar.slider.value()) == (0, 4, 4)
    assert "now · 5 frames" in bar.label.text()
    bar.slider.setValue(1)
    np.testing.assert_allclose(panel.kernels["conv1"], kernels(10), rtol=1e-3, atol=1e-6)
    assert "step 10" in bar.label.text()
    newer = kernels(1000)
    panel.set_kernels(newer)  # the trainer's next snapshot arrives while a past frame is shown
    np.testing.assert_allclose(panel.kernels["conv1"], kernels(10), rtol=1e-3, atol=1e-6)
    bar.slider.setValue(bar.slider.maximum())
    np.testing.assert_array_equal(panel.kernels["conv1"], newer)


def test_the_history_grows_while_the_run_is_written(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_history_run(run_with_history(tmp_path, [0, 10]))
    bar = panel.history
    assert bar.slider.maximum() == 1 and bar.at_end()
    write_snapshot(tmp_path, 20, 0, kernels(20), TOWERS)  # as another process would
    bar.refresh()
    assert bar.slider.maximum() == 2 and bar.at_end()


def test_play_walks_every_frame_and_stops_at_the_end(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_history_run(run_with_history(tmp_path, [0, 5, 9]))
    bar = panel.history
    seen: list[int] = []
    bar.frame_chosen.connect(lambda snap: seen.append(snap.step))
    bar._player.setInterval(10)
    bar.play_button.setChecked(True)  # at the end: starts from the first frame
    qtbot.waitUntil(lambda: not bar.play_button.isChecked(), timeout=5000)
    assert seen == [0, 5, 9]


def test_save_animation_writes_a_frame_per_snapshot(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_history_run(run_with_history(tmp_path / "run", [0, 1, 2, 3]))
    out = tmp_path / "history.gif"
    with qtbot.waitSignal(panel.history.saved, timeout=20000):
        panel.history.save_gif(out)
    with Image.open(out) as gif:
        assert gif.n_frames == 4
    assert "Saved 4 frames" in panel.history.label.text()
    qtbot.waitUntil(lambda: not panel.history.is_busy(), timeout=5000)


def test_no_run_means_no_history(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_history_run(None)
    assert not panel.history.slider.isEnabled() and not panel.history.save_button.isEnabled()
    assert panel.history.label.text() == "History: no run"


def test_a_run_opened_in_the_window_shows_its_history(qtbot, qt_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """File > Open run on a run another process trains: the Filters panel's slider walks its snapshots."""
    from alexgui.engine.store.rundir import RunDir
    from alexgui.qt.explorer import install_explorer
    from alexgui.qt.main_window import MainWindow
    from tests.helpers import make_dataset, tiny_config

    cfg = tiny_config(make_dataset(tmp_path / "data"))
    run = RunDir.create(tmp_path / "elsewhere", cfg)
    run.release()
    run_with_history(run.path, [0, 10, 20])
    window = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    install_explorer(window)
    qtbot.addWidget(window)
    try:
        assert window.open_run(run.path) is not None
        bar = window.explorer.filters.history
        qtbot.waitUntil(lambda: bar.run is not None and bar.slider.maximum() == 2, timeout=10000)
        assert bar.run == run.path.resolve()
    finally:
        window.explorer.shutdown()


def test_after_play_the_live_kernels_show_again(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_kernels(kernels(999))
    panel.set_history_run(run_with_history(tmp_path, [0, 5, 9]))
    bar = panel.history
    bar._player.setInterval(10)
    bar.play_button.setChecked(True)
    qtbot.waitUntil(lambda: not bar.play_button.isChecked(), timeout=5000)
    assert bar.shown_step is None and "now" in bar.label.text()
    newer = kernels(1001)
    panel.set_kernels(newer)  # the trainer's next snapshot is drawn: the panel is live again
    np.testing.assert_array_equal(panel.kernels["conv1"], newer)


def test_a_past_frame_keeps_its_place_when_thinning_moves_the_frames(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    steps = list(range(0, 100, 10))
    panel.set_history_run(run_with_history(tmp_path, steps))
    bar = panel.history
    bar.slider.setValue(7)  # step 70
    assert bar.shown_step == 70
    for step in (100, 110, 120):  # new snapshots, and thinning that removes every other old one
        write_snapshot(tmp_path, step, 0, kernels(step), TOWERS, keep=8)
    bar.refresh()
    assert bar.refs[bar.slider.value()].step <= 70 and not bar.at_end()
    assert bar.shown_step == 70 and "step 70" in bar.label.text()


def test_change_since_start_of_a_past_frame_is_against_the_historys_first(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_kernels(np.zeros((64, 3, 11, 11), np.float32), arch="torchvision")  # another network is shown
    panel.set_history_run(run_with_history(tmp_path, [0, 10, 20]))
    panel.show_change.setChecked(True)
    panel.history.slider.setValue(1)
    change = panel.displayed_kernels("conv1")
    assert change is not None and change.shape == (96, 3, 11, 11)
    np.testing.assert_allclose(change, kernels(10) - kernels(0), atol=1e-4)


def test_a_watched_run_shows_its_newest_frame_at_now(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Nothing live (a run opened to watch, no model loaded): the slider's right end is the run's newest
    snapshot, it follows the run as it grows, and live kernels take its place once they arrive."""
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.resize(380, 700)
    panel.show()
    run = run_with_history(tmp_path / "run", [0, 10, 20])
    panel.set_history_run(run)
    bar = panel.history
    np.testing.assert_allclose(panel.kernels["conv1"], kernels(20), rtol=1e-3, atol=1e-6)
    assert panel.grids[0].count == 48 and not panel.status.isVisible()
    bar.slider.setValue(0)
    np.testing.assert_allclose(panel.kernels["conv1"], kernels(0), rtol=1e-3, atol=1e-6)
    bar.slider.setValue(bar.slider.maximum())
    np.testing.assert_allclose(panel.kernels["conv1"], kernels(20), rtol=1e-3, atol=1e-6)
    write_snapshot(run, 30, 0, kernels(30), TOWERS)  # another process trains on
    bar.refresh()
    np.testing.assert_allclose(panel.kernels["conv1"], kernels(30), rtol=1e-3, atol=1e-6)
    panel.show_change.setChecked(True)  # the change view subtracts the history's first frame
    np.testing.assert_allclose(panel.displayed_kernels("conv1"), kernels(30) - kernels(0), atol=1e-4)
    panel.show_change.setChecked(False)
    live = kernels(999)
    panel.set_kernels(live)
    np.testing.assert_array_equal(panel.kernels["conv1"], live)
    write_snapshot(run, 40, 0, kernels(40), TOWERS)
    bar.refresh()  # the live kernels stay
    np.testing.assert_array_equal(panel.kernels["conv1"], live)


def test_another_run_without_snapshots_clears_the_newest_frame(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_history_run(run_with_history(tmp_path / "a", [0, 10]))
    assert "conv1" in panel.kernels
    (tmp_path / "b").mkdir()
    panel.set_history_run(tmp_path / "b")
    assert "conv1" not in panel.kernels and panel.grids[0].count == 0
    assert not panel.status.isHidden()
    bar = panel.history  # run b's, not a's: no frames, nothing to play or save
    assert bar.label.text() == "History of b: no snapshots yet"
    assert not bar.slider.isEnabled() and not bar.play_button.isEnabled() and not bar.save_button.isEnabled()


def test_watching_a_run_on_a_deeper_layer_shows_conv1s_newest_frame(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.layer_box.setCurrentText("conv2")
    panel.set_history_run(run_with_history(tmp_path, [0, 10]))
    assert panel.layer_box.currentText() == "conv1" and panel.grids[0].count == 48 and panel.status.isHidden()

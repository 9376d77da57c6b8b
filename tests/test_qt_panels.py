"""The explorer panels with real drag-and-drop events, clicks and worker threads (offscreen Qt)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from alexgui.engine.inference.predict import PredictorError
from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.model import zoo
from alexgui.qt import job_progress
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.panels import model_chooser
from alexgui.qt.panels.classify import ClassifyPanel
from alexgui.qt.panels.feature_maps import FeatureMapsPanel
from alexgui.qt.panels.filters import FiltersPanel
from alexgui.qt.panels.model_chooser import ModelChooser, weights_not_here
from alexgui.qt.panels.retrieval import RetrievalPanel
from alexgui.qt.workers import Job, describe_error
from tests.explore_helpers import (
    MeanColourPredictor,
    colour_image,
    small_torch_predictor,
    write_colour_folder,
)

WAIT_MS = 30000


def drop(widget: QWidget, paths: list[Path], must_accept: bool = True) -> None:
    """Real drag-enter, drag-move and drop events carrying file URLs."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.rect().center())
    for kind in (QDragEnterEvent, QDragMoveEvent, QDropEvent):
        # Qt 6 takes a QPoint for drag-enter and drag-move, a QPointF for the drop.
        at = pos if kind is QDropEvent else pos.toPoint()
        event = kind(at, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(widget, event)
        assert event.isAccepted() or not must_accept, f"{kind.__name__} was not accepted"


def _panel(qtbot, predictor=None) -> ClassifyPanel:  # type: ignore[no-untyped-def]
    panel = ClassifyPanel()
    qtbot.addWidget(panel)
    panel.resize(600, 700)
    if predictor is not None:
        panel.set_predictor(predictor)
    return panel


# ---- classify ---------------------------------------------------------------------------------


def test_drop_files(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = write_colour_folder(tmp_path, per_class=1)
    panel = _panel(qtbot, MeanColourPredictor())
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        drop(panel, files)
    assert [r.top[0].label for r in panel.results] == ["red", "blue"]
    assert [r.true_index for r in panel.results] == [0, 1]
    assert len(panel.card_widgets()) == 2 and all(r.ms >= 0 for r in panel.results)


def test_drop_a_folder(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = write_colour_folder(tmp_path / "photos", per_class=3)
    (tmp_path / "photos" / "readme.txt").write_text("not an image; folders only contribute images")
    panel = _panel(qtbot, MeanColourPredictor())
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        drop(panel, [tmp_path / "photos"])
    assert sorted(r.path for r in panel.results) == sorted(map(str, files))
    assert all(r.error is None for r in panel.results)


def test_drop_a_non_image(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is text pretending to be a JPEG")
    panel = _panel(qtbot, MeanColourPredictor())
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        drop(panel, [bad])
    (result,) = panel.results
    assert result.error and result.top == []
    (card,) = panel.card_widgets()
    assert result.error in card.message.text()


def test_drop_a_mix(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = write_colour_folder(tmp_path / "f", per_class=2)
    bad = tmp_path / "notes.txt"
    bad.write_text("x")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    panel = _panel(qtbot, MeanColourPredictor())
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        drop(panel, [files[0], bad, tmp_path / "f" / "blue", empty])
    by_name = {Path(r.path).name: r for r in panel.results}
    assert set(by_name) == {"red_0.png", "notes.txt", "blue_0.png", "blue_1.png", "empty.png"}
    assert by_name["notes.txt"].error and by_name["empty.png"].error
    assert by_name["blue_1.png"].top[0].label == "blue"


def test_drop_before_a_model_waits_for_one(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = write_colour_folder(tmp_path, per_class=1)
    panel = _panel(qtbot)
    drop(panel, files)
    assert "choose a model" in panel.hint.text() and panel.results == []
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        panel.set_predictor(MeanColourPredictor())
    assert len(panel.results) == 2


class SlowPredictor(MeanColourPredictor):
    def predict_u8(self, u8, ten_crop=False):  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        return super().predict_u8(u8, ten_crop)


def test_large_drop_shows_progress_and_cancels(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = write_colour_folder(tmp_path, per_class=20)
    panel = _panel(qtbot, SlowPredictor())
    panel.show()
    drop(panel, files)
    assert panel.progress.isVisible() and panel.cancel_button.isVisible()
    qtbot.waitUntil(lambda: len(panel.results) >= 2, timeout=WAIT_MS)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [True]
    assert 2 <= len(panel.results) < 40
    assert not panel.progress.isVisible()


def test_job_progress_counts_estimates_the_time_left_and_cancels(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    clock = [100.0]
    monkeypatch.setattr(job_progress.time, "monotonic", lambda: clock[0])
    progress = job_progress.JobProgress()
    qtbot.addWidget(progress)
    assert progress.isHidden()
    progress.begin(label="indexing")  # the amount is not known yet: a busy bar
    assert progress.isVisibleTo(None) and progress.bar.maximum() == 0
    progress.advance(10, 40)
    assert progress.bar.format() == "indexing 10 / 40"  # too early for an estimate
    clock[0] += 30.0  # 10 done in the first 30 s: 30 more take 90 s
    progress.advance(10, 40)
    assert progress.bar.format() == "indexing 10 / 40 · 1:30 left" and progress.bar.value() == 250
    with qtbot.waitSignal(progress.cancel_requested, timeout=1000):
        progress.cancel_button.click()
    progress.end()
    assert progress.isHidden()
    progress.begin(cancellable=False, describe=job_progress.megabytes_text)
    progress.advance(50_000_000, 200_000_000)
    assert progress.bar.format() == "50 / 200 MB" and progress.cancel_button.isHidden()


def test_ten_crop_switch_and_a_real_model(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (image,) = write_colour_folder(tmp_path, per_class=1)[:1]
    panel = _panel(qtbot, small_torch_predictor(num_classes=3))
    panel.crops.setCurrentIndex(1)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        panel.classify_paths([image])
    (result,) = panel.results
    assert len(result.top) == 3 and result.error is None
    assert "10 crops" in panel.card_widgets()[0].message.text()


def test_paste_an_image(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = _panel(qtbot, MeanColourPredictor())
    rgb = np.ascontiguousarray(np.asarray(colour_image("blue", 1)))
    image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1], QImage.Format.Format_RGB888).copy()
    QApplication.clipboard().setImage(image)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        panel.paste()
    (result,) = panel.results
    assert result.path == "pasted image 1" and result.top[0].label == "blue"


def test_model_chooser_offline_message(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: tmp_path / "hub")
    chooser = ModelChooser()
    qtbot.addWidget(chooser)
    with qtbot.waitSignal(chooser.loadFailed, timeout=WAIT_MS) as blocker:
        chooser.load("torchvision")
    message = blocker.args[0]
    assert zoo.default_entry().url in message and str(tmp_path / "hub") in message
    qtbot.waitUntil(lambda: not chooser.is_loading(), timeout=WAIT_MS)
    assert chooser.predictor is None and chooser.label.text() == "no model"
    assert "not on this computer" in chooser.failure and chooser.problem.isVisibleTo(chooser)
    assert chooser.pick_button.isVisibleTo(chooser)  # offline: the file can be picked by hand
    # The chooser offers the download by the error's type, not its wording: the engine keeps the
    # zoo's OfflineError as the cause of the PredictorError it raises.
    with pytest.raises(PredictorError) as raised:
        load_predictor("torchvision")
    assert weights_not_here(raised.value)
    assert not weights_not_here(PredictorError("model.pth: the weights file is not on this computer"))


def _offline_then_downloaded(calls: list[bool]):  # type: ignore[no-untyped-def]
    """A load_predictor whose weights are missing until a download is allowed."""

    def fake_load_predictor(spec, progress=None, stop=None, allow_download=False):  # type: ignore[no-untyped-def]
        calls.append(allow_download)
        if not allow_download:
            try:
                raise zoo.OfflineError(zoo.offline_help(zoo.default_entry(), "downloading was not requested"))
            except zoo.OfflineError as e:
                raise PredictorError(str(e)) from e
        progress(122_000_000, 244_000_000)
        return MeanColourPredictor()

    return fake_load_predictor


@pytest.mark.parametrize("job_ended_before_the_answer", [True, False])
def test_yes_to_the_download_question_starts_the_download(  # type: ignore[no-untyped-def]
    qtbot, monkeypatch: pytest.MonkeyPatch, job_ended_before_the_answer: bool
) -> None:
    """Issue #19: the question runs its own event loop, so the loading job may end while it is open;
    answering Yes must start the download either way."""
    calls: list[bool] = []
    monkeypatch.setattr(model_chooser, "load_predictor", _offline_then_downloaded(calls))
    chooser = ModelChooser()
    qtbot.addWidget(chooser)
    chooser.show()  # the chooser asks only when it is on screen
    asked: list[str] = []

    def question(parent, title, text):  # type: ignore[no-untyped-def]
        asked.append(text)
        if job_ended_before_the_answer:  # the user reads the question while the job ends
            qtbot.waitUntil(lambda: not chooser.is_loading(), timeout=WAIT_MS)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", question)
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: pytest.fail(f"unexpected warning {args}"))
    with qtbot.waitSignal(chooser.predictorChanged, timeout=WAIT_MS):
        chooser.load("torchvision")
    assert calls == [False, True]
    assert len(asked) == 1 and "is not on this computer" in asked[0]
    qtbot.waitUntil(lambda: not chooser.is_loading(), timeout=WAIT_MS)
    assert isinstance(chooser.predictor, MeanColourPredictor)


# ---- filters ----------------------------------------------------------------------------------


def _split_kernels() -> np.ndarray:
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.normal(size=(48, 1, 11, 11)), 3, axis=1)
    coloured = rng.normal(size=(48, 3, 1, 1)) * np.exp(-np.linspace(-2, 2, 11) ** 2)[None, None, :, None]
    coloured = coloured * np.ones((1, 1, 1, 11))
    return np.concatenate([grey, coloured]).astype(np.float32)


def test_filter_grid_groups_towers_and_scores_them(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.resize(640, 600)
    panel.set_kernels(_split_kernels(), towers=[i // 48 for i in range(96)])
    assert panel.grid_indices[0] == list(range(48)) and panel.grid_indices[1] == list(range(48, 96))
    assert panel.grids[0].count == 48 and panel.grids[1].count == 48
    assert panel.scores[1] > panel.scores[0] + 0.3
    assert f"{panel.scores[1]:.2f}" in panel.headings[1].text() and "Tower 1" in panel.headings[1].text()
    assert panel.grids[1].tooltip_at(panel.grids[1].tile_position(5)).startswith("conv1 kernel 53 · tower 1 · colour")
    qtbot.mouseClick(panel.grids[1], Qt.MouseButton.LeftButton, pos=panel.grids[1].tile_position(5).toPoint())
    assert panel.viewer.isVisible() and "conv1 kernel 53 of 96 · tower 1 · " in panel.viewer.caption.text()
    out = tmp_path / "kernels.png"
    assert panel.save_png(out)
    saved = QImage(str(out))
    assert not saved.isNull() and saved.width() > 200


def test_live_kernels_from_another_thread(qtbot) -> None:  # type: ignore[no-untyped-def]
    import torch

    panel = FiltersPanel()
    qtbot.addWidget(panel)
    feed = panel.kernel_feed()
    kernels = {"conv1": torch.from_numpy(_split_kernels())}
    thread = threading.Thread(target=feed, args=(kernels,))  # as the trainer calls on_kernels
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: panel.grids[1].count == 48, timeout=WAIT_MS)
    assert panel.scores[1] > panel.scores[0]


def test_deeper_layers_show_one_kernel_per_channel(qtbot) -> None:  # type: ignore[no-untyped-def]
    predictor = small_torch_predictor()
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.set_model(predictor.model)
    panel.layer_box.setCurrentText("conv2")
    assert panel.kernel_spin.maximum() == 255
    panel.kernel_spin.setValue(200)
    assert panel.grids[0].count == 48 and "tower 1" in panel.headings[0].text()


# ---- feature maps -----------------------------------------------------------------------------


def test_feature_maps_name_layer_and_channel(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    predictor = small_torch_predictor()
    panel = FeatureMapsPanel()
    qtbot.addWidget(panel)
    panel.resize(600, 600)
    panel.set_model(predictor.model, predictor.preprocess)
    with qtbot.waitSignal(panel.mapsReady, timeout=WAIT_MS):
        panel.layer_box.setCurrentText("conv2")
        panel.set_image(np.asarray(colour_image("red", 0).resize((256, 256))), "red.png")
    qtbot.waitUntil(lambda: panel.layer == "conv2" and panel.grid.count == 256, timeout=WAIT_MS)
    tip = panel.grid.tooltip_at(panel.grid.tile_position(200))
    assert tip.startswith("conv2 · channel 200 · tower 1")
    with qtbot.waitSignal(panel.mapsReady, timeout=WAIT_MS):
        panel.layer_box.setCurrentText("fc7")
    assert panel.grid.count == 1 and "fc7 · unit" in panel.grid.tooltip_at(panel.grid.tile_position(0))


def test_feature_maps_accept_a_dropped_image(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (image,) = write_colour_folder(tmp_path, per_class=1)[:1]
    predictor = small_torch_predictor()
    panel = FeatureMapsPanel()
    qtbot.addWidget(panel)
    panel.set_model(predictor.model, predictor.preprocess)
    with qtbot.waitSignal(panel.mapsReady, timeout=WAIT_MS):
        drop(panel, [image])
    assert panel.grid.count == 96  # conv1, the first layer


# ---- retrieval --------------------------------------------------------------------------------


def test_retrieval_build_query_and_stale(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gallery = tmp_path / "gallery"
    files = write_colour_folder(gallery, per_class=3)
    panel = RetrievalPanel()
    qtbot.addWidget(panel)
    panel.resize(640, 600)
    panel.set_predictor(MeanColourPredictor())
    panel.set_gallery(gallery, index_path=tmp_path / "index")
    assert panel.index is None and "no index yet" in panel.status.text()
    with qtbot.waitSignal(panel.indexReady, timeout=WAIT_MS):
        panel.build()
    assert len(panel.index) == 6 and panel.stale == []
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT_MS)
    with qtbot.waitSignal(panel.resultsReady, timeout=WAIT_MS):
        drop(panel, [files[1]])
    assert panel.results[0][0] == str(files[1].resolve()) and panel.results[0][1] == pytest.approx(0, abs=1e-2)
    assert all(Path(p).parent.name == "red" for p, _ in panel.results[:3])
    assert float(panel.neighbour_buttons[0].text()) == pytest.approx(0, abs=1e-2)
    qtbot.mouseClick(panel.neighbour_buttons[2], Qt.MouseButton.LeftButton)
    assert panel.viewer.isVisible() and "neighbour 3" in panel.viewer.caption.text()
    # A new image in the folder, then a different model: both make the index stale.
    colour_image("blue", 77).save(gallery / "blue" / "new.png")
    panel.set_gallery(gallery, index_path=tmp_path / "index")
    assert any("new" in r for r in panel.stale) and "Out of date" in panel.status.text()
    panel.set_predictor(MeanColourPredictor(fingerprint="other"))
    assert any("different model" in r for r in panel.stale)


def test_retrieval_cancel_keeps_the_old_index(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Eight batches of 16 at 0.05 s each at least: the cancel 100 ms in lands mid-build even on a loaded
    # machine (with 30 images, two batches, a clean-clone CI run once finished the build first).
    write_colour_folder(tmp_path / "g", per_class=64)
    panel = RetrievalPanel()
    qtbot.addWidget(panel)
    panel.set_predictor(SlowPredictor())
    panel.set_gallery(tmp_path / "g", index_path=tmp_path / "index")
    with qtbot.waitSignal(panel.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        panel.build()
        qtbot.wait(100)
        panel.cancel()
    assert panel.index is None and not (tmp_path / "index" / "index.json").exists()


def test_job_reports_failures_and_stops(qtbot) -> None:  # type: ignore[no-untyped-def]
    def boom(stop, progress):  # type: ignore[no-untyped-def]
        raise ValueError("broken input.png: bad")

    job = Job(boom)
    errors: list[BaseException] = []
    job.errored.connect(errors.append)
    with qtbot.waitSignal(job.done, timeout=WAIT_MS):
        with qtbot.waitSignal(job.errored, timeout=WAIT_MS):
            job.start()
    assert describe_error(errors[0]) == "broken input.png: bad"  # the message a user reads
    assert len(errors) == 1 and type(errors[0]) is ValueError  # the exception itself, for its type

    def endless(stop, progress):  # type: ignore[no-untyped-def]
        i = 0
        while True:
            i += 1
            progress(i, 0, "")
            yield i
            time.sleep(0.001)

    job2 = Job(endless)
    got: list[int] = []
    job2.yielded.connect(got.append)
    with qtbot.waitSignal(job2.done, timeout=WAIT_MS) as done:
        job2.start()
        qtbot.waitUntil(lambda: len(got) > 3, timeout=WAIT_MS)
        job2.cancel()
    assert done.args == [True] and not job2.is_running()



def test_a_panel_runs_one_job_at_a_time_and_stops_it_when_closed(qtbot) -> None:  # type: ignore[no-untyped-def]
    class Panel(JobMixin, QWidget):
        def __init__(self) -> None:
            super().__init__()
            self.ended: list[bool] = []

        def job_done(self, cancelled: bool) -> None:
            self.ended.append(cancelled)

    def endless(stop, progress):  # type: ignore[no-untyped-def]
        while not stop.is_set():
            yield 1
            time.sleep(0.005)

    panel = Panel()
    qtbot.addWidget(panel)
    panel.show()
    ran: list[str] = []
    panel.after_job(lambda: ran.append("at once"))  # idle: runs now
    panel.new_job(endless).start()
    assert panel.is_busy() and ran == ["at once"]
    with pytest.raises(RuntimeError, match="one job at a time"):
        panel.new_job(endless)
    panel.after_job(lambda: ran.append("after the job"))
    panel.close()  # closeEvent: cancel, wait for the thread; a closing panel starts nothing new
    assert not panel.is_busy() and panel.ended == [True] and ran == ["at once"]

def test_filter_grid_shows_the_change_since_the_first_snapshot(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = FiltersPanel()
    qtbot.addWidget(panel)
    rng = np.random.default_rng(0)
    start = rng.normal(0, 0.01, (96, 3, 11, 11)).astype(np.float32)
    learned = np.zeros_like(start)
    learned[:, 0] = 0.05  # every kernel gains red
    panel.set_kernels(start, reset_history=True)
    panel.set_kernels(start + learned)
    np.testing.assert_allclose(panel.displayed_kernels("conv1"), start + learned)
    panel.show_change.setChecked(True)
    np.testing.assert_allclose(panel.displayed_kernels("conv1"), learned, atol=1e-6)
    assert "change since start" in panel.headings[0].text()
    panel.set_kernels(start, reset_history=True)  # a new run starts a new history
    np.testing.assert_allclose(panel.displayed_kernels("conv1"), 0.0)

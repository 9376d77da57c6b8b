"""The training form's "Start from" group (issue 16 item 2): the sources, what learns, the parameter count, the
"My photos (quick)" preset, and a fine-tune started from the window with the real engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PySide6.QtGui import QTextDocumentFragment

from alexgui.engine.events import Finished
from alexgui.engine.model import zoo
from alexgui.engine.model.torchvision_alexnet import TorchvisionAlexNet
from alexgui.engine.store.checkpoint import load_checkpoint
from alexgui.engine.store.metrics_log import read_events
from alexgui.qt.main_window import MainWindow
from alexgui.qt.panels.monitor import TrainSettingsForm
from tests.finetune_helpers import make_source_run, new_classes

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source_run(tmp_path_factory.mktemp("source"))


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch's hub cache with a file of torchvision AlexNet's shapes, its checksum the registry's."""
    folder = tmp_path / "hub"
    folder.mkdir()
    entry = zoo.default_entry()
    path = folder / entry.filename
    torch.manual_seed(0)
    torch.save(TorchvisionAlexNet(num_classes=1000).state_dict(), path)
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: folder)
    monkeypatch.setattr(zoo, "default_entry", lambda: dataclasses.replace(entry, sha256=zoo.sha256_file(path)))
    return path


def test_random_weights_train_everything_and_the_mode_box_waits(qtbot) -> None:
    form = TrainSettingsForm([("cpu", "CPU")])
    qtbot.addWidget(form)
    start = form.start_from
    assert start.init == "" and not start.mode.isEnabled()
    assert start.params.text() == "56,909,194 of the paper's 56,909,194 parameters learn (10 classes)"
    cfg = form.config()
    assert cfg.train.init == "" and form.arch.isEnabled()


def test_the_photos_preset_starts_from_imagenet_weights_and_trains_the_last_layer(qtbot, hub: Path) -> None:
    form = TrainSettingsForm([("cpu", "CPU")])
    qtbot.addWidget(form)
    form.preset.setCurrentIndex(form.preset.findData("photos"))
    start = form.start_from
    assert (start.init, start.finetune) == ("torchvision", "head") and not start.problem
    assert form.arch.currentData() == "torchvision" and not form.arch.isEnabled()
    assert start.params.text() == "40,970 of torchvision's 57,044,810 parameters learn (10 classes)"
    assert "new last layer" in start.note.text()
    cfg = form.config()
    assert (cfg.train.init, cfg.train.finetune, cfg.model.arch) == ("torchvision", "head", "torchvision")
    assert form.preset_name == "photos"
    start.mode.setCurrentIndex(start.mode.findData("fc"))  # no longer the preset: "Custom", and the count follows
    assert form.preset_name == "custom"
    assert start.params.text().startswith("54,575,114 of torchvision's")
    form.set_config(cfg)  # a saved config comes back as it was
    assert (form.start_from.init, form.start_from.finetune, form.preset_name) == ("torchvision", "head", "photos")


def test_without_the_weights_the_group_says_which_file_to_fetch(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: tmp_path / "empty-hub")
    form = TrainSettingsForm([("cpu", "CPU")])
    qtbot.addWidget(form)
    form.start_from.set_source("torchvision")
    assert "alexnet-owt-7be5be79.pth" in form.start_from.problem and str(tmp_path / "empty-hub") in form.start_from.problem
    note = form.start_from.note
    assert note.toolTip() == form.start_from.problem  # the plain text, to copy
    shown = QTextDocumentFragment.fromHtml(note.text()).toPlainText().replace("\u200b", "")
    assert shown == form.start_from.problem  # the same words, wrapped


def test_a_run_folder_as_source_sets_its_network_and_counts_the_datasets_classes(qtbot, source: Path, tmp_path: Path) -> None:
    data = new_classes(tmp_path / "data")
    form = TrainSettingsForm([("cpu", "CPU")])
    qtbot.addWidget(form)
    form.set_dataset(str(data))
    form.arch.setCurrentIndex(form.arch.findData("torchvision"))
    form.start_from.set_source(str(source))
    assert form.arch.currentData() == "paper" and not form.arch.isEnabled()
    assert form.start_from.params.text() == "56,876,418 of the paper's 56,876,418 parameters learn (2 classes)"
    form.start_from.mode.setCurrentIndex(form.start_from.mode.findData("head"))
    assert form.start_from.params.text().startswith("8,194 of the paper's")


def test_a_fine_tune_from_the_window_runs_with_the_real_engine(qtbot, qt_settings, source: Path, tmp_path: Path) -> None:
    w = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(w)
    try:
        data = new_classes(tmp_path / "data", train_per_class=4, val_per_class=2)
        cfg = w.monitor.form.config()
        cfg.data.data, cfg.data.workers = str(data), 0
        cfg.train.epochs, cfg.train.batch_size, cfg.train.checkpoint_minutes = 1, 4, 0
        cfg.train.init, cfg.train.finetune = str(source), "head"
        w.monitor.form.set_config(cfg)
        with qtbot.waitSignal(w.session.run_started, timeout=10_000) as started:
            w.start_training()
        run = Path(started.args[0])
        qtbot.waitUntil(lambda: not w.session.is_running, timeout=120_000)
        events, _ = read_events(run / "metrics.jsonl")
        assert isinstance(events[-1], Finished), events[-1]
        assert "fine-tuned from" in w.log.text().lower()
        meta = load_checkpoint(run / "checkpoints" / "last.safetensors").meta
        assert meta["lineage"]["finetune"] == "head" and meta["class_names"] == ["leaf", "sun"]
    finally:
        w.session.shutdown()


def test_a_source_that_cannot_be_used_is_refused_before_a_run_folder_is_made(qtbot, qt_settings, tmp_path: Path) -> None:
    w = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(w)
    missing = tmp_path / "gone.safetensors"
    w.monitor.form.start_from.set_source(str(missing))
    runs_before = set(qt_settings.runs_root.glob("*")) if qt_settings.runs_root.exists() else set()
    w.start_training()
    assert not w.session.is_running
    assert "gone.safetensors: no such file" in (w.last_error or "")
    assert (set(qt_settings.runs_root.glob("*")) if qt_settings.runs_root.exists() else set()) == runs_before


def test_the_form_downloads_missing_imagenet_weights_in_the_app(qtbot, qt_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from ImageNet without the weights: the form offers the download; the Classify panel's chooser
    fetches them (here a stand-in 'server' writes a file of the right shapes) and the form is ready."""
    from alexgui.qt.explorer import install_explorer
    from alexgui.qt.main_window import MainWindow

    folder = tmp_path / "hub"
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: folder)
    served = tmp_path / "served.pth"
    torch.manual_seed(0)
    torch.save(TorchvisionAlexNet(num_classes=1000).state_dict(), served)
    entry = dataclasses.replace(zoo.default_entry(), sha256=zoo.sha256_file(served))
    monkeypatch.setattr(zoo, "default_entry", lambda: entry)
    fetched: list[str] = []

    def fake_download(url, dest, sha256, progress=None, stop=None, expected_bytes=0):  # type: ignore[no-untyped-def]
        fetched.append(url)
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(served.read_bytes())
        return Path(dest)

    monkeypatch.setattr(zoo, "download", fake_download)
    window = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    install_explorer(window)
    qtbot.addWidget(window)
    try:
        start = window.monitor.form.start_from
        start.set_source("torchvision")
        assert start.problem and start.download.isVisibleTo(window.monitor.form)
        start.download.click()
        qtbot.waitUntil(lambda: not start.problem, timeout=60000)
        assert fetched == [entry.url] and not start.download.isVisibleTo(window.monitor.form)
        assert "of torchvision's 57,044,810 parameters learn" in start.params.text()
    finally:
        window.explorer.shutdown()


def test_the_missing_weights_message_wraps_inside_the_dock(qtbot, qt_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline message's address, digest and path wrap: the form keeps the dock's width at 1280x800, with
    no horizontal scroll bar and the Download button whole (they pushed the form 200 px wider)."""
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: tmp_path / "deep" / "cache" / "torch" / "hub" / "checkpoints")
    window = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    monitor = window.monitor
    monitor.form.preset.setCurrentIndex(monitor.form.preset.findData("photos"))
    start = monitor.form.start_from
    qtbot.waitUntil(lambda: bool(start.problem), timeout=10000)
    entry = zoo.default_entry()
    assert entry.sha256 in start.problem and str(entry.hub_path) in start.note.toolTip()
    assert "--init (train)" in start.problem  # the command line's flag for train, not classify's --model
    qtbot.waitUntil(lambda: not monitor.scroll.horizontalScrollBar().isVisible(), timeout=5000)
    viewport = monitor.scroll.viewport().width()
    assert monitor.form.width() <= viewport
    button = start.download
    assert button.mapTo(monitor.scroll.viewport(), button.rect().topRight()).x() <= viewport

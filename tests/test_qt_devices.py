"""The app's device boxes offer what the engine's device vocabulary offers: with two GPUs, the paper's
split, one tower each; and picking it trains with that device string."""

from __future__ import annotations

import pytest
import torch

from alexgui.engine.devices import TWO_TOWERS_LABEL
from alexgui.qt.main_window import MainWindow
from alexgui.qt.panels.experiments import ExperimentsPanel


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"Fake H200 #{i}")


def _items(box) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(box.itemData(i), box.itemText(i)) for i in range(box.count())]


def test_the_training_form_offers_the_papers_two_gpu_split(qtbot, qt_settings, two_gpus) -> None:
    window = MainWindow(qt_settings)
    qtbot.addWidget(window)
    box = window.monitor.form.device
    assert _items(box) == [
        ("cpu", "CPU"),
        ("cuda:0", "GPU 0: Fake H200 #0"),
        ("cuda:1", "GPU 1: Fake H200 #1"),
        ("cuda:0,cuda:1", TWO_TOWERS_LABEL),
    ]
    box.setCurrentIndex(3)
    assert window.monitor.form.config().train.device == "cuda:0,cuda:1"


def test_the_experiments_form_offers_it_too(qtbot, tmp_path, two_gpus) -> None:
    panel = ExperimentsPanel(out_root=tmp_path / "experiments")
    qtbot.addWidget(panel)
    assert ("cuda:0,cuda:1", TWO_TOWERS_LABEL) in _items(panel.device)


def test_without_gpus_only_the_cpu_is_offered(qtbot, qt_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    window = MainWindow(qt_settings)
    qtbot.addWidget(window)
    assert [value for value, _ in _items(window.monitor.form.device)] == ["cpu"]


# -- the best device preselected: what `--device auto` picks ----------------------------------------


def test_with_gpus_the_first_gpu_is_preselected_not_the_split(qtbot, qt_settings, two_gpus) -> None:
    window = MainWindow(qt_settings)
    qtbot.addWidget(window)
    form = window.monitor.form
    assert form.device.currentData() == "cuda:0" and form.config().train.device == "cuda:0"
    assert window.device_label.text() == "Device: GPU 0: Fake H200 #0"
    panel = ExperimentsPanel(out_root=qt_settings.runs_root)
    qtbot.addWidget(panel)
    assert panel.device.currentData() == "cuda:0"  # the Experiments form's box: the same pick


def test_apples_gpu_is_offered_and_preselected_when_torch_reports_it(qtbot, qt_settings, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    window = MainWindow(qt_settings)
    qtbot.addWidget(window)
    form = window.monitor.form
    assert _items(form.device) == [("cpu", "CPU"), ("mps", "Apple GPU (mps)")]
    assert form.config().train.device == "mps"
    form.device.setCurrentIndex(0)
    assert form.config().train.device == "cpu"  # a choice made stays made


def test_a_loaded_auto_or_a_vanished_gpu_shows_the_best_device(qtbot, qt_settings, two_gpus) -> None:
    window = MainWindow(qt_settings)
    qtbot.addWidget(window)
    form = window.monitor.form
    for saved, shown in (("cpu", "cpu"), ("auto", "cuda:0"), ("cuda:7", "cuda:0"), ("cuda", "cuda:0"),
                         ("cuda:1", "cuda:1"), ("cuda:0,cuda:1", "cuda:0,cuda:1")):  # fmt: skip
        cfg = form.config()
        cfg.train.device = saved
        form.set_config(cfg)
        assert form.device.currentData() == shown, saved

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
    window = MainWindow(qt_settings)
    qtbot.addWidget(window)
    assert [value for value, _ in _items(window.monitor.form.device)] == ["cpu"]

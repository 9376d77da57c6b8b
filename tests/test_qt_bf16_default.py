"""bf16 in the app (issue 13, item 5): on by default for CPU training where the CPU has bf16
instructions, off and greyed where the device cannot compute in bf16, and what the form says is what
the run gets. The CPU's answer is patched, so each case runs on any machine."""

from __future__ import annotations

import pytest

from alexgui.engine.training import precision
from alexgui.qt.panels.experiment_form import ExperimentForm
from alexgui.qt.panels.monitor import TrainSettingsForm

pytestmark = pytest.mark.timeout(60)

DEVICES = [("cpu", "CPU"), ("cuda:0", "GPU 0: test"), ("mps", "Apple GPU (mps)")]


def cpu_with_bf16(monkeypatch: pytest.MonkeyPatch, has: bool) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: has)
    # "auto" means the CPU here whatever this machine has
    monkeypatch.setattr(precision, "resolve_spec", lambda spec: "cpu" if spec == "auto" else spec)


def pick(form: TrainSettingsForm | ExperimentForm, spec: str) -> None:
    form.device.setCurrentIndex(form.device.findData(spec))


def test_engine_answers_which_devices_get_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_with_bf16(monkeypatch, True)
    assert precision.bf16_by_default("cpu") and precision.bf16_by_default("auto")
    assert precision.bf16_available("cuda:1") and precision.bf16_available("cuda:0,cuda:1")
    assert not precision.bf16_by_default("cuda:0")  # a GPU: the user's choice
    assert not precision.bf16_available("mps") and not precision.bf16_by_default("mps")
    cpu_with_bf16(monkeypatch, False)
    assert not precision.bf16_by_default("cpu") and not precision.bf16_available("cpu")
    assert precision.bf16_available("cuda:0")


def test_first_launch_trains_a_bf16_cpu_in_bf16(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_with_bf16(monkeypatch, True)
    form = TrainSettingsForm(devices=[("cpu", "CPU")])
    qtbot.addWidget(form)
    assert form.bf16.isEnabled() and form.bf16.isChecked()
    assert "On by default" in form.bf16.toolTip()
    assert form.config().train.bf16 is True
    form.bf16.click()  # the user turns it off: the run is fp32
    assert form.config().train.bf16 is False


def test_a_cpu_without_bf16_shows_it_off_and_says_why(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_with_bf16(monkeypatch, False)
    form = TrainSettingsForm(devices=[("cpu", "CPU")])
    qtbot.addWidget(form)
    assert not form.bf16.isEnabled() and not form.bf16.isChecked()
    assert "no bf16 instructions" in form.bf16.toolTip()
    assert form.config().train.bf16 is False


def test_the_choice_follows_the_device_and_is_kept(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_with_bf16(monkeypatch, True)
    form = TrainSettingsForm(devices=DEVICES)
    qtbot.addWidget(form)
    pick(form, "cpu")
    form.bf16.set_wanted(True)
    pick(form, "mps")  # Apple's GPU: fp32, greyed
    assert not form.bf16.isEnabled() and not form.config().train.bf16
    assert "Apple" in form.bf16.toolTip()
    pick(form, "cuda:0")  # back on a device with bf16: the choice made before
    assert form.bf16.isEnabled() and form.config().train.bf16
    pick(form, "cpu")
    assert form.config().train.bf16


def test_a_loaded_config_keeps_its_precision(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_with_bf16(monkeypatch, True)
    form = TrainSettingsForm(devices=[("cpu", "CPU")])
    qtbot.addWidget(form)
    cfg = form.first_launch_config()
    cfg.train.bf16 = False  # a run trained in fp32, opened to train again
    form.set_config(cfg)
    assert not form.bf16.isChecked() and form.config().train.bf16 is False


def test_experiments_run_in_the_same_arithmetic(qtbot, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cpu_with_bf16(monkeypatch, True)
    form = ExperimentForm(out_root=tmp_path, devices=[("cpu", "CPU"), ("mps", "Apple GPU (mps)")])
    qtbot.addWidget(form)
    pick(form, "mps")  # Apple's GPU, preselected as the best device: fp32
    assert form.options().bf16 is False
    pick(form, "cpu")  # the CPU's default: bf16
    assert form.options().bf16 is True
    form.bf16.click()  # turned off by the user: kept off
    pick(form, "mps")
    pick(form, "cpu")
    assert form.options().bf16 is False


def test_first_launch_follows_the_preselected_device(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where "auto" means the CPU but the form preselects a GPU (another machine's device list), the
    first launch takes the GPU's default (fp32), and the CPU's (bf16) once the CPU is picked."""
    cpu_with_bf16(monkeypatch, True)
    form = TrainSettingsForm(devices=[("cpu", "CPU"), ("cuda:0", "GPU 0: test")])
    qtbot.addWidget(form)
    assert form.device.currentData() == "cuda:0" and not form.config().train.bf16
    pick(form, "cpu")
    assert form.config().train.bf16

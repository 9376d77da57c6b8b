"""The frictions a first user met in the window (issue 19, item 5): each one fixed, each one tested.

The wheel that changed settings silently, the preset that kept its name over changed values, and
the dataset folder accepted at selection and refused only at Start.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QComboBox, QDoubleSpinBox, QScrollArea, QVBoxLayout, QWidget

from alexgui.qt.panels.monitor import TrainSettingsForm
from alexgui.qt.presets import PRESETS
from alexgui.qt.wheel_guard import install_wheel_guard
from tests.helpers import make_image

pytestmark = pytest.mark.timeout(60)


def wheel(widget: QWidget, notches: int = -1) -> bool:
    """One wheel turn over the widget's centre (negative: towards the user); True if it was accepted."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


@pytest.fixture
def form(qtbot) -> TrainSettingsForm:
    install_wheel_guard(QApplication.instance())  # as apply_theme does in the app
    holder = QScrollArea()  # as in the Training dock: the form scrolls
    form = TrainSettingsForm(devices=[("cpu", "CPU")])
    holder.setWidget(form)
    holder.setWidgetResizable(True)
    qtbot.addWidget(holder)
    holder.resize(360, 300)
    holder.show()
    qtbot.waitExposed(holder)
    holder.activateWindow()
    qtbot.waitUntil(holder.isActiveWindow, timeout=5_000)
    form.holder = holder  # type: ignore[attr-defined]  # qtbot keeps only a weak reference
    return form


def test_the_wheel_leaves_an_unfocused_spin_box_alone_and_turns_a_focused_one(qtbot, form: TrainSettingsForm) -> None:
    momentum = form.momentum
    assert momentum.value() == pytest.approx(0.9)
    assert momentum.focusPolicy() == Qt.FocusPolicy.StrongFocus  # a wheel over it does not give it the focus
    assert not momentum.hasFocus()
    accepted = wheel(momentum, -4)
    assert momentum.value() == pytest.approx(0.9)
    assert not accepted  # left to the parent: the scroll area scrolls instead
    assert not momentum.hasFocus()

    momentum.setFocus()
    qtbot.waitUntil(momentum.hasFocus, timeout=5_000)
    wheel(momentum, -1)
    assert momentum.value() == pytest.approx(0.85)  # focused (clicked or tabbed to): the wheel turns it


def test_the_wheel_leaves_an_unfocused_combo_box_alone(qtbot, form: TrainSettingsForm) -> None:
    box: QComboBox = form.activation
    assert box.currentData() == "relu"
    wheel(box, -1)
    assert box.currentData() == "relu"
    box.setFocus()
    qtbot.waitUntil(box.hasFocus, timeout=5_000)
    wheel(box, -1)
    assert box.currentData() == "tanh"


def test_fields_built_after_the_guard_are_guarded_too(qtbot) -> None:
    install_wheel_guard(QApplication.instance())
    later = QWidget()
    spin = QDoubleSpinBox(later)
    spin.setRange(0, 10)
    spin.setValue(5)
    QVBoxLayout(later).addWidget(spin)
    qtbot.addWidget(later)
    later.show()
    qtbot.waitExposed(later)
    assert spin.focusPolicy() == Qt.FocusPolicy.StrongFocus  # set when Qt polished it
    wheel(spin, 3)
    assert spin.value() == 5


def test_the_preset_says_custom_once_any_recipe_field_changes(form: TrainSettingsForm) -> None:
    quick = PRESETS[0]
    assert form.preset_name == quick.name
    form.momentum.setValue(0.7)  # the reported case: momentum moved, the preset still said "Quick demo"
    assert form.preset_name == "custom"
    assert form.preset.currentText() == "Custom"
    assert "Custom" in form.preset_note.text()
    form.momentum.setValue(0.9)
    assert form.preset_name == quick.name  # back on the preset's values: its name again
    form.weight_decay.setValue(0.001)
    assert form.preset_name == "custom"


def test_choosing_a_preset_sets_its_whole_recipe(form: TrainSettingsForm) -> None:
    form.momentum.setValue(0.5)
    form.weight_decay.setValue(0.01)
    paper = PRESETS[1]
    form.preset.setCurrentIndex(form.preset.findData(paper.name))
    assert form.preset_name == paper.name
    cfg = form.config()
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (90, 128, 0.01)
    assert (cfg.train.momentum, cfg.train.weight_decay) == pytest.approx((0.9, 0.0005))


def test_a_loaded_config_off_the_presets_shows_custom(form: TrainSettingsForm) -> None:
    cfg = form.first_launch_config()
    cfg.train.momentum = 0.7
    form.set_config(cfg)
    assert form.preset_name == "custom"
    cfg.train.momentum = 0.9
    form.set_config(cfg)
    assert form.preset_name == PRESETS[0].name


# -- the dataset, checked when chosen -------------------------------------------------------------


@pytest.fixture
def window(qtbot, qt_settings):
    from alexgui.qt.main_window import MainWindow

    w = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    qtbot.addWidget(w)
    yield w
    w.training.datasets.shutdown()
    w.session.shutdown()


def choose(qtbot, window, folder: Path) -> bool:
    started = window.open_dataset(folder)
    qtbot.waitUntil(lambda: not window.training.datasets.is_busy(), timeout=20_000)
    return started


def test_a_folder_without_class_folders_is_refused_when_chosen(qtbot, window, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        make_image(i, seed=i, size=(32, 32)).save(flat / f"{i}.png")  # images, but no class folders
    choose(qtbot, window, flat)
    assert "no class folders" in window.last_error and str(flat) in window.last_error
    assert window.monitor.form.config().data.data == "demo"  # the form kept its dataset
    assert str(flat) not in window.settings.recent("dataset")
    assert window.runs == {}  # nothing was started, so no failed run in the list


def test_class_folders_without_images_are_refused_when_chosen(qtbot, window, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    for c in ("a", "b"):
        (notes / c).mkdir(parents=True)
        (notes / c / "readme.txt").write_text("not an image")
    choose(qtbot, window, notes)
    assert "no images" in window.last_error
    assert window.monitor.form.config().data.data == "demo"


def test_a_good_folder_is_taken_with_what_it_holds(qtbot, window, tmp_path: Path) -> None:
    good = tmp_path / "good"
    for c in range(2):
        (good / f"class_{c}").mkdir(parents=True)
        for i in range(3):
            make_image(c, seed=10 * c + i, size=(32, 32)).save(good / f"class_{c}" / f"{i}.png")
    window.last_error = ""
    assert choose(qtbot, window, good)
    assert window.last_error == ""
    assert window.monitor.form.config().data.data == str(good)
    assert window.settings.recent("dataset")[0] == str(good)
    assert "2 classes" in window.statusBar().currentMessage()


def test_a_missing_folder_is_refused_at_once(window, tmp_path: Path) -> None:
    assert window.open_dataset(tmp_path / "gone") is False
    assert "not a folder" in window.last_error


def test_a_recent_folder_picked_from_the_list_is_checked_again(qtbot, window, tmp_path: Path) -> None:
    gone_bad = tmp_path / "was-a-dataset"
    gone_bad.mkdir()  # its class folders have gone since it was last used
    form = window.monitor.form
    form.set_recent_datasets([str(gone_bad)])
    index = form.dataset.findData(str(gone_bad))
    assert index >= 0
    form.dataset.activated.emit(index)  # what picking it in the list sends
    qtbot.waitUntil(lambda: not window.training.datasets.is_busy(), timeout=20_000)
    assert "no class folders" in window.last_error
    assert form.config().data.data == "demo" and form.dataset.currentData() == "demo"

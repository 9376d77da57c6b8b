"""The training panel: the run's settings (paper recipe, ablation switches), the controls, and progress.

The form is a view over a RunConfig: `config()` reads it, `set_config()` fills it. Fields the form
does not show (the LRN formula, seeds, checkpoint interval, ...) pass through unchanged. The presets
are alexgui/presets.py's (shared with `alexgui train --preset`), the progress view below the controls in qt/run_progress.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from alexgui.config import RunConfig
from alexgui.engine.training.precision import bf16_by_default
from alexgui.qt.form_widgets import Bf16Box, device_box, select_device
from alexgui.qt.form_widgets import check_box as _check
from alexgui.qt.form_widgets import double_box as _double
from alexgui.qt.form_widgets import spin_box as _spin
from alexgui.qt.panels.start_from import StartFromForm, count_classes
from alexgui.qt.presets import CUSTOM, CUSTOM_NOTE, PRESETS, QUICK, matching
from alexgui.qt.run_progress import ProgressView

DEMO = "demo"
CHOOSE = "__choose__"

__all__ = ["CHOOSE", "DEMO", "PRESETS", "MonitorPanel", "TrainSettingsForm", "device_box", "select_device"]



class TrainSettingsForm(QWidget):
    """Settings for a new run; defaults are the paper's recipe with the quick-demo amount of work."""

    dataset_browse_requested = Signal()
    dataset_check_requested = Signal(str)  # a folder picked from the list: taken once the window has checked it
    changed = Signal()

    def __init__(self, devices: list[tuple[str, str]] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._base = RunConfig()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)

        # Data
        self.dataset = QComboBox()
        self.dataset.setToolTip("An image folder with one subfolder per class (optional train/ and val/), or the demo")
        self.dataset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.dataset.setMinimumContentsLength(12)
        self.dataset.addItem("Built-in demo dataset", DEMO)
        self.dataset.addItem("Choose folder…", CHOOSE)
        self.dataset.activated.connect(self._on_dataset_activated)
        self._dataset_value = DEMO
        data_form = self._group(layout, "Data")
        data_form.addRow("Dataset", self.dataset)
        self.start_from = StartFromForm(self._group(layout, "Start from"), self)

        # Recipe
        self.preset = QComboBox()
        for p in PRESETS:
            self.preset.addItem(p.label, p.name)
        self.preset.addItem("Custom", CUSTOM)
        self.preset.setToolTip("How much work: the paper's full recipe, or a short run that shows learning quickly")
        self.preset_note = QLabel()
        self.preset_note.setObjectName("hint")
        self.preset_note.setWordWrap(True)
        recipe = self._group(layout, "Recipe")
        recipe.addRow("Preset", self.preset)
        recipe.addRow(self.preset_note)
        self.epochs = _spin(1, 10_000, 10, "Passes over the training set (paper: about 90)")
        self.batch_size = _spin(1, 4096, 32, "Images per step (paper: 128)")
        self.lr = _double(
            1e-6, 10.0, 5, 0.001,
            "Initial learning rate (paper: 0.01), divided by 10 when validation error stalls. On a small "
            "validation set, whose error is mostly noise, the schedule waits longer before deciding it has "
            "stalled (12 images: 23 to 44 epochs instead of 3; from about 2,500 images on, the paper's 3)",
        )
        self.momentum = _double(0.0, 0.999, 3, 0.05, "SGD momentum (paper: 0.9)")
        self.weight_decay = _double(0.0, 0.1, 5, 0.0001, "L2 weight decay (paper: 0.0005)")
        self.conv1_init_std = _double(
            0.000001, 0.1, 6, 0.00001,
            "Standard deviation of conv1's initial N(0, σ) weights (paper: 0.01, as every layer). The quick "
            "demo starts conv1 a thousand times smaller, so the kernels' structure shows within a minute "
            "instead of drowning in the initial noise. Paper network only; torchvision's keeps PyTorch's init",
        )
        self.conv1_lr_scale = _double(
            0.01, 1000.0, 2, 1.0,
            "conv1's learning rate as a multiple of every other layer's (paper: 1, one rate for all layers). "
            "The quick demo's conv1 starts small and learns 10 times faster, so that its kernels carry the "
            "image's signal as soon as the paper's would. Paper network only",
        )
        self.device = device_box(devices)
        self.device.setToolTip("Where to train: the CPU, one GPU, or with two GPUs one tower on each (as in the paper)")
        recipe.addRow("Epochs", self.epochs)
        recipe.addRow("Batch size", self.batch_size)
        recipe.addRow("Learning rate", self.lr)
        recipe.addRow("Momentum", self.momentum)
        recipe.addRow("Weight decay", self.weight_decay)
        recipe.addRow("conv1 initial σ", self.conv1_init_std)
        recipe.addRow("conv1 rate ×", self.conv1_lr_scale)
        recipe.addRow("Device", self.device)
        self.bf16 = Bf16Box()
        recipe.addRow("", self.bf16)

        # Model and the paper's ablations
        self.arch = QComboBox()
        self.arch.addItem("Paper: two towers (60.97 M parameters)", "paper")
        self.arch.addItem("torchvision: one tower (61.10 M)", "torchvision")
        self.arch.setToolTip("The paper's two-GPU network, or torchvision's single-tower variant")
        self.activation = QComboBox()
        self.activation.addItem("ReLU (paper)", "relu")
        self.activation.addItem("tanh (Figure 1 comparison)", "tanh")
        self.lrn = _check("Local response normalisation", "LRN after conv1 and conv2 (paper section 3.3; -1.4% top-1)")
        self.overlapping = _check("Overlapping pooling (3/2)",
                                  "Max-pool window 3, stride 2 instead of 2/2 (section 3.4; -0.4% top-1)")
        self.dropout = _check("Dropout 0.5 in fc6, fc7",
                              "Section 4.2: reduces overfitting, roughly doubles the steps to converge")
        model = self._group(layout, "Model")
        model.addRow("Network", self.arch)
        model.addRow("Activation", self.activation)
        model.addRow(self.lrn)
        model.addRow(self.overlapping)
        model.addRow(self.dropout)

        # Augmentation
        self.random_crop = _check("Random 224×224 crops", "Random patches of the 256×256 image (section 4.1)")
        self.flip = _check("Horizontal reflections", "Random left-right flips (section 4.1)")
        self.pca_noise = _check("PCA colour noise (σ 0.1)",
                                "Add multiples of the RGB principal components (section 4.1; paper network only)")
        self.ten_crop = _check("Validate on 10 crops",
                               "Average the softmax over 4 corners + centre and their reflections (slower)")
        aug = self._group(layout, "Augmentation")
        for box in (self.random_crop, self.flip, self.pca_noise, self.ten_crop):
            aug.addRow(box)
        layout.addStretch(1)

        self.preset.currentIndexChanged.connect(self._on_preset_changed)
        # Every field of the recipe, however it changes (typed, the wheel, a loaded config): the
        # preset's name must never stay on values that are no longer the preset's.
        for spin in self.recipe_fields():
            spin.valueChanged.connect(self._sync_preset)
        for w in self.recipe_fields():
            w.valueChanged.connect(self.changed)
        for c in (self.device, self.arch, self.activation):
            c.currentIndexChanged.connect(self.changed)
        self.device.currentIndexChanged.connect(lambda: self.bf16.follow_device(str(self.device.currentData())))
        self.bf16.toggled.connect(self.changed)
        for b in (self.lrn, self.overlapping, self.dropout, self.random_crop, self.flip, self.pca_noise, self.ten_crop):
            b.toggled.connect(self.changed)
        self.arch.currentIndexChanged.connect(self._sync_arch)
        self.start_from.changed.connect(self._sync_arch)
        self.start_from.changed.connect(self._sync_preset)
        self.start_from.changed.connect(self.changed)
        self.set_config(self.first_launch_config())
        # The form's preselected device, not what "auto" resolves to here, decides the first launch's
        # arithmetic: the two differ where the device list is another machine's (a test, a remote box).
        self.bf16.set_wanted(None)

    @staticmethod
    def _group(layout: QVBoxLayout, title: str) -> QFormLayout:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        layout.addWidget(box)
        return form

    @staticmethod
    def first_launch_config() -> RunConfig:
        """The demo data with the quick preset's recipe (the paper's otherwise), on the best device, in
        bf16 where that device is a CPU with bf16 instructions (precision.bf16_by_default)."""
        cfg = QUICK.apply(RunConfig())
        cfg.train.bf16 = bf16_by_default(cfg.train.device)
        return cfg

    # -- reading and writing the form -------------------------------------------------------

    def set_config(self, cfg: RunConfig) -> None:
        self._base = copy.deepcopy(cfg)
        self.set_dataset(cfg.data.data)
        t, m, d = cfg.train, cfg.model, cfg.data
        self.epochs.setValue(t.epochs)
        self.batch_size.setValue(t.batch_size)
        self.lr.setValue(t.lr)
        self.momentum.setValue(t.momentum)
        self.weight_decay.setValue(t.weight_decay)
        self.conv1_init_std.setValue(t.conv1_init_std)
        self.conv1_lr_scale.setValue(t.conv1_lr_scale)
        select_device(self.device, t.device)  # a GPU that is gone: the best device there is
        self.bf16.set_wanted(t.bf16)
        self.bf16.follow_device(str(self.device.currentData()))
        self.arch.setCurrentIndex(max(self.arch.findData(m.arch), 0))
        self.activation.setCurrentIndex(max(self.activation.findData(m.activation), 0))
        self.lrn.setChecked(m.lrn)
        self.overlapping.setChecked(m.pooling == "overlapping")
        self.dropout.setChecked(m.dropout > 0)
        self.random_crop.setChecked(d.random_crop)
        self.flip.setChecked(d.flip)
        self.pca_noise.setChecked(d.pca_noise > 0)
        self.ten_crop.setChecked(d.ten_crop_eval)
        self.start_from.set_values(t.init, t.finetune, m.arch)
        self._sync_preset()
        self._sync_arch()

    def config(self) -> RunConfig:
        cfg = copy.deepcopy(self._base)
        cfg.data.data = self._dataset_value
        cfg.train.epochs = self.epochs.value()
        cfg.train.batch_size = self.batch_size.value()
        cfg.train.lr = self.lr.value()
        cfg.train.momentum = self.momentum.value()
        cfg.train.weight_decay = self.weight_decay.value()
        cfg.train.conv1_init_std = self.conv1_init_std.value()
        cfg.train.conv1_lr_scale = self.conv1_lr_scale.value()
        cfg.train.device = str(self.device.currentData())
        cfg.train.bf16 = self.bf16.isChecked()
        cfg.model.arch = self.arch.currentData()
        cfg.model.activation = self.activation.currentData()
        cfg.model.lrn = self.lrn.isChecked()
        cfg.model.pooling = "overlapping" if self.overlapping.isChecked() else "non-overlapping"
        base_dropout = self._base.model.dropout or 0.5
        cfg.model.dropout = base_dropout if self.dropout.isChecked() else 0.0
        cfg.data.random_crop = self.random_crop.isChecked()
        cfg.data.flip = self.flip.isChecked()
        base_noise = self._base.data.pca_noise or 0.1
        cfg.data.pca_noise = base_noise if self.pca_noise.isChecked() else 0.0
        cfg.data.ten_crop_eval = self.ten_crop.isChecked()
        cfg.train.init, cfg.train.finetune = self.start_from.init, self.start_from.finetune  # type: ignore[assignment]
        if self.start_from.source_arch:  # the source's network, whatever the Network box said before
            cfg.model.arch = self.start_from.source_arch  # type: ignore[assignment]
        return cfg

    def set_dataset(self, value: str | Path) -> None:
        """Select a dataset folder (added to the list when new) or "demo"."""
        value = str(value)
        index = self.dataset.findData(value)
        if index < 0:
            index = self.dataset.count() - 1  # just above "Choose folder…"
            self.dataset.insertItem(index, Path(value).name or value, value)
            self.dataset.setItemData(index, value, Qt.ItemDataRole.ToolTipRole)
        self.dataset.setCurrentIndex(index)
        self._dataset_value = value
        self._sync_arch()  # the parameter count follows the class count
        self.changed.emit()

    def set_recent_datasets(self, folders: list[str]) -> None:
        for folder in reversed(folders):
            if self.dataset.findData(folder) < 0:
                self.dataset.insertItem(1, Path(folder).name or folder, folder)
                self.dataset.setItemData(1, folder, Qt.ItemDataRole.ToolTipRole)
        self.dataset.setCurrentIndex(max(self.dataset.findData(self._dataset_value), 0))

    @property
    def class_count(self) -> int:
        return count_classes(self._dataset_value)

    @property
    def preset_name(self) -> str:
        return str(self.preset.currentData())

    def _on_dataset_activated(self, index: int) -> None:
        value = self.dataset.itemData(index)
        if value == CHOOSE or (value != DEMO and value != self._dataset_value):
            # Keep showing the current choice; the window sets a new one if the user picks a folder
            # that passes its check (a recent folder may have changed since it was last used).
            self.dataset.setCurrentIndex(max(self.dataset.findData(self._dataset_value), 0))
            if value == CHOOSE:
                self.dataset_browse_requested.emit()
            else:
                self.dataset_check_requested.emit(str(value))
        else:
            self._dataset_value = str(self.dataset.itemData(index))
            self.changed.emit()

    def recipe_fields(self) -> tuple[QSpinBox | QDoubleSpinBox, ...]:
        """The fields a preset sets, in the order of Preset.values()."""
        return (self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay, self.conv1_init_std,
                self.conv1_lr_scale)

    def _on_preset_changed(self, index: int) -> None:
        name = self.preset.itemData(index)
        for p in PRESETS:
            if p.name == name:
                for spin, value in zip(self.recipe_fields(), p.values()):
                    spin.blockSignals(True)  # one sync below, not five half-way ones
                    spin.setValue(value)  # type: ignore[arg-type]  # ints for the QSpinBoxes, in Preset.values() order
                    spin.blockSignals(False)
                self.start_from.blockSignals(True)
                self.start_from.set_values(p.init, p.finetune, str(self.arch.currentData()))
                self.start_from.blockSignals(False)
                self._sync_arch()
                self.changed.emit()
        self._sync_preset()

    def _sync_preset(self) -> None:
        """Show which preset the recipe's fields match ("Custom" when none), and what it means."""
        match = matching(tuple(box.value() for box in self.recipe_fields()),  # type: ignore[arg-type]
                         self.start_from.init, self.start_from.finetune)
        name = match.name if match else CUSTOM
        self.preset.blockSignals(True)
        self.preset.setCurrentIndex(self.preset.findData(name))
        self.preset.blockSignals(False)
        self.preset_note.setText(match.note if match else CUSTOM_NOTE)

    def _sync_arch(self) -> None:
        source_arch = self.start_from.source_arch  # fine-tuning: the network is the source's, as it is
        if source_arch:
            self.arch.blockSignals(True)
            self.arch.setCurrentIndex(max(self.arch.findData(source_arch), 0))
            self.arch.blockSignals(False)
        for box in (self.arch, self.activation, self.lrn, self.overlapping):
            box.setEnabled(not self.start_from.init)
        paper = self.arch.currentData() == "paper"
        self.start_from.set_class_count(self.class_count, str(self.arch.currentData()))
        for box in (self.lrn, self.pca_noise, self.conv1_init_std, self.conv1_lr_scale):
            box.setEnabled(paper and not self.start_from.init)
        if not paper:
            self.lrn.setToolTip("torchvision's AlexNet has no LRN")
        else:
            self.lrn.setToolTip("LRN after conv1 and conv2 (paper section 3.3; -1.4% top-1)")


class MonitorPanel(QWidget):
    """The Training dock: settings in a scroll area; controls and progress always in view below them."""

    def __init__(
        self, actions: list[QAction], devices: list[tuple[str, str]] | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.form = TrainSettingsForm(devices)
        scroll = QScrollArea()
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        # Narrower than the form (the dock dragged thin), it scrolls sideways rather than cutting fields off.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.buttons: dict[str, QToolButton] = {}
        # Two by two: in one row the four buttons made the dock 413 pixels wide at least, too much at 1280x800.
        row = QGridLayout()
        row.setSpacing(6)
        for action in actions:
            button = QToolButton()
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            button.setObjectName(f"{action.objectName()}Button")
            row.addWidget(button, len(self.buttons) // 2, len(self.buttons) % 2)
            self.buttons[action.objectName()] = button
        self.progress = ProgressView()
        controls = QFrame()
        controls.setObjectName("controls")
        c_layout = QVBoxLayout(controls)
        c_layout.setContentsMargins(10, 10, 10, 10)
        c_layout.setSpacing(8)
        c_layout.addLayout(row)
        c_layout.addWidget(self.progress)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(scroll, 1)
        layout.addWidget(controls)
        self.scroll = scroll

    def set_form_enabled(self, enabled: bool) -> None:
        """The settings belong to the next run: frozen while one trains."""
        self.form.setEnabled(enabled)

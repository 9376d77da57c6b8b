"""The Experiments panel's form: which claim, on what data, where, and how much training.

It makes the engine's ExperimentOptions; the panel (experiments.py) runs them. Every field keeps a
readable width in a narrow column: the combo boxes shrink to a few characters (a dataset's long path
is in the item's tooltip), the question wraps.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.experiments import EXPERIMENTS, ExperimentOptions
from alexgui.qt.form_widgets import Bf16Box
from alexgui.qt.panels.monitor import CHOOSE, DEMO, device_box
from alexgui.qt.window_fit import shrinkable


def default_out_root() -> Path:
    return Path.home() / "alexgui-experiments"


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class ExperimentForm(QGroupBox):
    """See the module docstring. `changed` fires when the experiment or the output folder changes
    (the panel then shows the report saved there, if any)."""

    changed = Signal()

    def __init__(self, out_root: str | Path | None = None, devices: list[tuple[str, str]] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__("Experiment", parent)
        self.experiment = QComboBox()
        for e in EXPERIMENTS.values():
            self.experiment.addItem(e.title, e.name)
            self.experiment.setItemData(self.experiment.count() - 1, e.title, Qt.ItemDataRole.ToolTipRole)
        self.question = QLabel()
        self.question.setWordWrap(True)
        self.question.setObjectName("hint")
        self.dataset = QComboBox()
        self.dataset.addItem("Built-in demo dataset", DEMO)
        self.dataset.addItem("Choose folder…", CHOOSE)
        self.dataset.setToolTip("An image folder with one subfolder per class (optional train/ and val/), or the demo")
        self.dataset.activated.connect(self._on_dataset_activated)
        self._dataset_value = DEMO
        self.out_root = QLineEdit(str(Path(out_root) if out_root is not None else default_out_root()))
        self.out_root.setToolTip("Runs and the report go to FOLDER/<experiment>; run again with the same folder to resume")
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose the folder for experiments")
        browse.clicked.connect(self._choose_out_root)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_root, 1)
        out_row.addWidget(browse)
        self.epochs = _spin(1, 10_000, 30, "Epochs per run (the ablations compare the last epoch's validation error)")
        self.max_steps = _spin(0, 10_000_000, 0, "Stop each run at this step; 0 = the epochs decide")
        self.seeds = _spin(1, 20, 1, "Runs per variant with seeds 0..K-1; 3 or more to see whether an effect "
                           "stands out of the seed-to-seed noise")  # fmt: skip
        self.batch_size = _spin(1, 4096, 128, "Images per step (paper: 128)")
        self.crop = _spin(32, 224, 224, "Training crop; the paper's is 224. Smaller is faster on a CPU but not the paper's input")
        self.device = device_box(devices)
        self.bf16 = Bf16Box()  # every run of an experiment in the same arithmetic: the variants stay comparable
        self.bf16.follow_device(str(self.device.currentData()))
        self.device.currentIndexChanged.connect(lambda: self.bf16.follow_device(str(self.device.currentData())))
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Experiment", self.experiment)
        form.addRow(self.question)
        for label, field in (("Dataset", self.dataset), ("Output folder", out_row), ("Epochs", self.epochs),
                             ("Max steps", self.max_steps), ("Seeds", self.seeds), ("Batch size", self.batch_size),
                             ("Crop", self.crop), ("Device", self.device), ("", self.bf16)):
            form.addRow(label, field)
        QVBoxLayout(self).addLayout(form)
        for box in (self.experiment, self.dataset, self.device):  # filled: long titles, paths, GPU names
            shrinkable(box)
        self.experiment.currentIndexChanged.connect(self._show_question)
        # The title may be cut in a narrow column: the whole of it on hover.
        self.experiment.currentTextChanged.connect(self.experiment.setToolTip)
        self.experiment.currentIndexChanged.connect(self.changed)
        self.out_root.editingFinished.connect(self.changed)
        self._show_question()
        self.experiment.setToolTip(self.experiment.currentText())

    @property
    def experiment_name(self) -> str:
        return str(self.experiment.currentData())

    def set_experiment(self, name: str) -> None:
        index = self.experiment.findData(name)
        if index < 0:
            raise ValueError(f"unknown experiment {name!r}")
        self.experiment.setCurrentIndex(index)

    def set_dataset(self, folder: str | Path) -> None:
        value = str(folder)
        if value != DEMO:
            index = self.dataset.findData(value)
            if index < 0:
                self.dataset.insertItem(self.dataset.count() - 1, Path(value).name or value, value)
                index = self.dataset.findData(value)
            self.dataset.setItemData(index, value, Qt.ItemDataRole.ToolTipRole)
        self._dataset_value = value
        self.dataset.setCurrentIndex(self.dataset.findData(value))
        self.dataset.setToolTip(value if value != DEMO else "The built-in demo dataset")

    def out_folder(self) -> Path:
        return Path(self.out_root.text()).expanduser() / self.experiment_name

    def options(self) -> ExperimentOptions:
        crop = self.crop.value()
        return ExperimentOptions(
            data=self._dataset_value,
            epochs=self.epochs.value(),
            max_steps=self.max_steps.value(),
            seeds=self.seeds.value(),
            device=str(self.device.currentData()),
            bf16=self.bf16.isChecked(),
            batch_size=self.batch_size.value(),
            crop=crop,
            resize=max(crop, round(crop * 256 / 224)),  # the paper's 256:224 margin for random crops
        )

    def _show_question(self) -> None:
        e = EXPERIMENTS[self.experiment_name]
        self.question.setText(f"{e.question} Recommended: {e.recommended_seeds} seeds.")

    def _on_dataset_activated(self, index: int) -> None:
        if self.dataset.itemData(index) != CHOOSE:
            self._dataset_value = str(self.dataset.itemData(index))
            return
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder (one subfolder per class)")
        if folder:
            self.set_dataset(folder)
        else:
            self.dataset.setCurrentIndex(self.dataset.findData(self._dataset_value))

    def _choose_out_root(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for experiments", self.out_root.text())
        if folder:
            self.out_root.setText(folder)
            self.changed.emit()

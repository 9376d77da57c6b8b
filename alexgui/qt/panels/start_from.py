"""The training form's "Start from" group: random weights as the paper, or a trained network to fine-tune
(engine/training/init_source.py), and which layers learn, with what each choice means and how many of the
network's parameters it trains."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QFormLayout, QLabel, QPushButton

from alexgui.engine.model import zoo
from alexgui.engine.training.init_source import FineTuneError, parameter_counts, quick_check
from alexgui.qt.breakable import breakable_html

RANDOM = ""
TORCHVISION = "torchvision"
CHOOSE_FILE = "__file__"
CHOOSE_RUN = "__run__"

MODE_NOTES = {
    "": "Every weight starts random, as in the paper: the Recipe below decides everything. Needs many images "
        "and a long run.",
    "head": "Only a new last layer learns, on the fc7 features the network already computes (computed once, "
            "then each epoch takes seconds). The right choice for a few hundred photos.",
    "fc": "fc6, fc7 and a new last layer learn; the convolutional layers keep what they learnt. For a few "
          "thousand photos; a step costs about half of one from scratch.",
    "all": "Every layer learns, the pretrained ones at a tenth of the learning rate: a step costs what one "
           "from scratch does, but the run starts far ahead. For large datasets unlike the source's.",
}


def count_classes(dataset: str) -> int:
    """The dataset's class count from its folder names alone (no image opened): the demo's, or the class
    folders of DIR/train (else DIR). 2 when it cannot be told: the smallest a dataset may have."""
    if dataset == "demo":
        from alexgui.engine.data.demo import CLASSES

        return len(CLASSES)
    root = Path(dataset)
    root = root / "train" if (root / "train").is_dir() else root
    try:
        return max(sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), 2)
    except OSError:
        return 2


class StartFromForm(QObject):
    """Two boxes and two lines of text, laid into the form's "Start from" group (a QObject: its widgets
    belong to the group's layout)."""

    changed = Signal()
    download_requested = Signal()  # torchvision's weights are missing and the user asked for them

    def __init__(self, form: QFormLayout, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.source = QComboBox()
        self.source.setObjectName("startFrom")
        self.source.addItem("Random weights (the paper)", RANDOM)
        self.source.addItem("ImageNet (torchvision)", TORCHVISION)
        self.source.addItem("A checkpoint file…", CHOOSE_FILE)
        self.source.addItem("A run folder…", CHOOSE_RUN)
        self.source.setToolTip("Train from random weights, or fine-tune a network trained before: torchvision's "
                               "ImageNet AlexNet (its weights in torch's hub cache), or any alexgui checkpoint or run")
        self.mode = QComboBox()
        self.mode.setObjectName("finetuneMode")
        self.mode.addItem("The last layer", "head")
        self.mode.addItem("The fully connected layers", "fc")
        self.mode.addItem("Everything", "all")
        self.mode.setToolTip("Which layers learn; the others stay exactly as the source has them")
        self.note = QLabel()
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)  # breakable_html's zero-width spaces and line breaks
        self.params = QLabel()
        self.params.setObjectName("hint")
        self.params.setWordWrap(True)
        self.download = QPushButton("Download ImageNet weights…")
        entry = zoo.default_entry()
        self.download.setToolTip(f"Download torchvision's ImageNet AlexNet ({entry.bytes / 1e6:.0f} MB from {entry.url}, "
                                 "checked against its SHA-256) into torch's hub cache; the Classify panel shows the "
                                 "bytes as they arrive, with Cancel")
        self.download.clicked.connect(self.download_requested)
        self.download.hide()
        form.addRow("Start from", self.source)
        form.addRow("Train", self.mode)
        form.addRow(self.note)
        form.addRow(self.download)
        form.addRow(self.params)
        self._value = RANDOM
        self._arch = "paper"  # the source's network (the form's choice while training from random weights)
        self._classes = 10
        self._problem = ""
        self.source.activated.connect(self._on_source_activated)
        self.mode.currentIndexChanged.connect(self._update)
        self.mode.currentIndexChanged.connect(self.changed)
        self._update()

    # -- values ---------------------------------------------------------------------------------

    @property
    def init(self) -> str:
        return self._value

    @property
    def finetune(self) -> str:
        return str(self.mode.currentData())

    @property
    def source_arch(self) -> str | None:
        """The source's architecture, when a source is chosen and could be read."""
        return self._arch if self._value and not self._problem else None

    @property
    def problem(self) -> str:
        """Why the chosen source cannot be used, or ""."""
        return self._problem

    def set_values(self, init: str, finetune: str, arch: str) -> None:
        self.mode.blockSignals(True)
        self.mode.setCurrentIndex(max(self.mode.findData(finetune), 0))
        self.mode.blockSignals(False)
        self._arch = arch
        self.set_source(init)

    def set_source(self, value: str) -> None:
        """Choose a source ("" for random weights, "torchvision", a checkpoint or a run folder) and check it
        at once (its header only: the run loads and checks the weights)."""
        self._value = value
        self._problem = ""
        if value:
            try:
                self._arch = quick_check(value)
            except FineTuneError as e:
                self._problem = str(e)
        index = self.source.findData(value)
        if index < 0:
            index = self.source.count()
            self.source.addItem(Path(value).name or value, value)
            self.source.setItemData(index, value, Qt.ItemDataRole.ToolTipRole)
        self.source.setCurrentIndex(index)
        self._update()
        self.changed.emit()

    def set_class_count(self, classes: int, arch: str) -> None:
        """The dataset's class count and the form's network, for the parameter count shown."""
        self._classes = max(classes, 2)
        if not self._value:
            self._arch = arch
        self._update()

    # -- display --------------------------------------------------------------------------------

    def _on_source_activated(self, index: int) -> None:
        value = self.source.itemData(index)
        if value == CHOOSE_FILE:
            path, _ = QFileDialog.getOpenFileName(self.source, "Checkpoint to start from", "",
                                                  "Checkpoints (*.safetensors *.pth *.pt *.bin);;All files (*)")
            self.set_source(path or self._value)  # cancelled: the choice before
        elif value == CHOOSE_RUN:
            path = QFileDialog.getExistingDirectory(self.source, "Run folder to start from (its best checkpoint)")
            self.set_source(path or self._value)
        else:
            self.set_source(str(value))

    def _update(self) -> None:
        fine_tune = bool(self._value)
        self.mode.setEnabled(fine_tune)
        self.download.setVisible(self._value == TORCHVISION and bool(self._problem))
        if self._problem:
            self.note.setText(breakable_html(self._problem))  # its path and address wrap in the dock
            self.note.setToolTip(self._problem)
            self.note.setProperty("error", True)
            self.params.setText("")
            return
        self.note.setProperty("error", False)
        self.note.setToolTip("")
        self.note.setText(html.escape(MODE_NOTES[self.finetune if fine_tune else ""]))
        counts = parameter_counts(self._arch, self._classes)
        learn, total = counts[self.finetune] if fine_tune else counts["all"]
        network = "torchvision's" if self._arch == "torchvision" else "the paper's"
        self.params.setText(f"{learn:,} of {network} {total:,} parameters learn ({self._classes} classes)")

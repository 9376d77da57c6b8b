"""Small form widgets the training and experiment forms share: the device choice, spin boxes, checkboxes."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from alexgui.engine.devices import AUTO, best_choice, device_choices


def device_box(devices: Sequence[tuple[str, str]] | None = None) -> QComboBox:
    """A choice of training device: (device string, label) pairs, by default every choice this machine
    offers (engine/devices.py), the paper's two-GPU split included when two GPUs are present. The best
    one (what `--device auto` picks: a CUDA GPU, else Apple's, else the CPU) is preselected."""
    box = QComboBox()
    choices = list(devices if devices is not None else device_choices())
    for value, label in choices:
        box.addItem(label, value)
    box.setCurrentIndex(max(box.findData(best_choice(choices)), 0))
    return box


def select_device(box: QComboBox, spec: str) -> None:
    """Show `spec` in a device box: "auto" (and a device this machine no longer has) as the best one
    offered, "cuda" as the current GPU."""
    spec = spec.strip()
    if spec == "cuda":
        spec = "cuda:0"
    index = box.findData(spec) if spec.lower() != AUTO else -1
    if index < 0:
        index = box.findData(best_choice([(str(box.itemData(i)), box.itemText(i)) for i in range(box.count())]))
    box.setCurrentIndex(max(index, 0))


def spin_box(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setToolTip(tip)
    box.setAccelerated(True)
    return box


def double_box(lo: float, hi: float, decimals: int, step: float, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setToolTip(tip)
    return box


def check_box(text: str, tip: str) -> QCheckBox:
    box = QCheckBox(text)
    box.setToolTip(tip)
    return box

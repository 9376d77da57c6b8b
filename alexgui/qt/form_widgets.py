"""Small form widgets the training and experiment forms share: the device choice, the bf16 switch, spin
boxes, checkboxes."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from alexgui.engine.devices import AUTO, best_choice, device_choices
from alexgui.engine.training import precision


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


class Bf16Box(QCheckBox):
    """The bf16 switch of a training form. Ticked and enabled only where the chosen device computes in
    bf16 (a CUDA GPU, a CPU with bf16 instructions); elsewhere greyed and unticked, saying why. Until the
    user clicks it (or a loaded config sets it) it shows the device's default (precision.bf16_by_default:
    on for a CPU with bf16 instructions); after that, their choice, kept across device changes."""

    def __init__(self) -> None:
        super().__init__("bf16 arithmetic")
        self._wanted: bool | None = None  # None: the device's default
        self._spec = "cpu"
        self.clicked.connect(self._on_clicked)  # the user's clicks only, not setChecked below

    def set_wanted(self, wanted: bool | None) -> None:
        self._wanted = wanted
        self._show()

    def follow_device(self, spec: str) -> None:
        self._spec = spec
        self._show()

    def _on_clicked(self, checked: bool) -> None:
        self._wanted = checked

    def _show(self) -> None:
        available = precision.bf16_available(self._spec)
        wanted = precision.bf16_by_default(self._spec) if self._wanted is None else self._wanted
        self.setEnabled(available)
        self.setChecked(wanted and available)
        self.setToolTip(self._why())

    def _why(self) -> str:
        kind = precision.device_kind(self._spec)
        if kind == "mps":
            return "bf16 autocast is not used on Apple's GPU: this run computes in fp32"
        if kind == "cpu" and not precision.cpu_has_bf16():
            return ("This CPU has no bf16 instructions (AVX512-BF16, AMX or ARM's BF16): emulated bf16 would be "
                    "slower than fp32, so the run computes in fp32")
        if kind == "cpu":
            return ("Convolutions and matrix products in bf16 with this CPU's bf16 instructions; weights, "
                    "gradients and the optimizer stay fp32. On by default for CPU training: measured 1.5 times "
                    "the images/s of fp32, with validation error after the same steps within the spread "
                    "between seeds (benchmarks/README.md)")
        return ("bf16 autocast on the GPU (faster where it has bf16 tensor cores); weights, gradients and the "
                "optimizer stay fp32")


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

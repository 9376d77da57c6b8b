"""The training form's presets: how much work a run does, on the paper's optimiser.

A preset names a whole Recipe group (epochs, batch size, learning rate, momentum, weight decay): the
form shows a preset's name only while every one of those fields holds the preset's value, and
"Custom" as soon as any of them is changed, by typing, the wheel, or a loaded configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from alexgui.config import TrainConfig

PAPER_MOMENTUM = TrainConfig.momentum
PAPER_WEIGHT_DECAY = TrainConfig.weight_decay


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    epochs: int
    batch_size: int
    lr: float
    note: str
    momentum: float = PAPER_MOMENTUM
    weight_decay: float = PAPER_WEIGHT_DECAY

    def values(self) -> tuple[int, int, float, float, float]:
        """(epochs, batch size, learning rate, momentum, weight decay), as `matching` compares them."""
        return self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay


# Both keep the paper's momentum and weight decay. The paper's learning rate 0.01 is tuned for 1000
# classes: the bias-1 initialisation makes fc7's 4096 outputs about 1.5 for every image, so one step
# moves each logit by about lr * 9000 * (p - y). With 10 classes that overshoots (loss ~35 in the first
# steps on the demo data, then chance for an epoch); 0.001 learns at once (measured: val top-5 error
# 2.7% after 2 demo epochs at batch 32, against 26.7% at 0.01).
PRESETS = (
    Preset(
        "quick",
        "Quick demo (laptop CPU)",
        epochs=10,
        batch_size=32,
        lr=0.001,
        note="With batch 32, 10 epochs and learning rate 0.001 (paper: 128, 90, 0.01) an epoch of the demo "
        "data takes a minute or two on a laptop CPU. The paper's 0.01 is tuned for 1000 classes; with "
        "10 it overshoots at first. Momentum and weight decay are the paper's.",
    ),
    Preset(
        "paper",
        "Paper recipe (batch 128, 90 epochs)",
        epochs=90,
        batch_size=128,
        lr=0.01,
        note="Krizhevsky et al. 2012, section 5: batch 128, about 90 epochs, learning rate ÷10 "
        "when validation error stalls (3 times). Days on ImageNet; meant for a GPU.",
    ),
)
CUSTOM = "custom"
CUSTOM_NOTE = "Custom recipe: epochs, batch size, learning rate, momentum or weight decay differ from every preset."


def matching(values: tuple[int, int, float, float, float]) -> Preset | None:
    """The preset whose recipe these values are, or None (the form then says "Custom").

    Floats are compared to a relative 1e-9: a spin box rounds to its decimals, which these presets'
    values survive exactly, but a value read back from TOML may differ in the last bit."""

    def same(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-12)

    for preset in PRESETS:
        if all(same(float(a), float(b)) for a, b in zip(preset.values(), values)):
            return preset
    return None

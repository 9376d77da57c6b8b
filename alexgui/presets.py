"""The training presets: how much work a run does, on the paper's optimiser. One definition, used by the
app's training form (qt/panels/monitor.py, through qt/presets.py) and by `alexgui train --preset`.

A preset names a whole Recipe group (epochs, batch size, learning rate, momentum, weight decay). The app
shows a preset's name only while every one of those fields holds the preset's value ("Custom" once any
changes); the command line starts from the preset and lets any flag given with it override it.
"""

from __future__ import annotations

from dataclasses import dataclass

from alexgui.config import RunConfig, TrainConfig

PAPER_MOMENTUM = TrainConfig.momentum
PAPER_WEIGHT_DECAY = TrainConfig.weight_decay

# The preset's fields as RunConfig's [train] settings, in the order of Preset.values().
RECIPE_FIELDS = ("epochs", "batch_size", "lr", "momentum", "weight_decay")


@dataclass(frozen=True)
class Preset:
    name: str  # what --preset takes and the app stores
    label: str  # what the app's box shows
    epochs: int
    batch_size: int
    lr: float
    note: str  # what it changes from the paper: shown under the app's box and in `alexgui train --help`
    momentum: float = PAPER_MOMENTUM
    weight_decay: float = PAPER_WEIGHT_DECAY

    def values(self) -> tuple[int, int, float, float, float]:
        """(epochs, batch size, learning rate, momentum, weight decay), as `matching` compares them."""
        return self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay

    def apply(self, cfg: RunConfig) -> RunConfig:
        """`cfg` with this preset's recipe (in place, and returned); every other setting untouched."""
        for name, value in zip(RECIPE_FIELDS, self.values()):
            setattr(cfg.train, name, value)
        return cfg


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
QUICK = PRESETS[0]  # the demo data's preset: the app's first launch, `alexgui train` on the demo data
PAPER = PRESETS[1]
ALIASES = {"demo": "quick"}  # other names --preset accepts
CUSTOM = "custom"
CUSTOM_NOTE = "Custom recipe: epochs, batch size, learning rate, momentum or weight decay differ from every preset."


def preset_named(name: str) -> Preset | None:
    """The preset called `name` (or one of its ALIASES), ignoring case; None for any other name."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    return next((p for p in PRESETS if p.name == key), None)


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

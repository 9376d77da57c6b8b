"""The training presets: how much work a run does, on the paper's optimiser. One definition, used by the
app's training form (qt/panels/monitor.py, through qt/presets.py) and by `alexgui train --preset`.

A preset names a whole Recipe group (epochs, batch size, learning rate, momentum, weight decay,
conv1's initial std and learning-rate multiple). The app
shows a preset's name only while every one of those fields holds the preset's value ("Custom" once any
changes); the command line starts from the preset and lets any flag given with it override it.
"""

from __future__ import annotations

from dataclasses import dataclass

from alexgui.config import RunConfig, TrainConfig

PAPER_MOMENTUM = TrainConfig.momentum
PAPER_WEIGHT_DECAY = TrainConfig.weight_decay
PAPER_CONV1_INIT_STD = TrainConfig.conv1_init_std
PAPER_CONV1_LR_SCALE = TrainConfig.conv1_lr_scale

# The preset's fields as RunConfig's [train] settings, in the order of Preset.values().
RECIPE_FIELDS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "conv1_init_std", "conv1_lr_scale")
RecipeValues = tuple[int, int, float, float, float, float, float]


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
    conv1_init_std: float = PAPER_CONV1_INIT_STD
    conv1_lr_scale: float = PAPER_CONV1_LR_SCALE
    init: str = ""  # fine-tuning presets: the network to start from (TrainConfig.init) ...
    finetune: str = "all"  # ... and what learns

    def values(self) -> RecipeValues:
        """The fields of RECIPE_FIELDS, in that order, as `matching` compares them."""
        return (self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay, self.conv1_init_std,
                self.conv1_lr_scale)

    def apply(self, cfg: RunConfig) -> RunConfig:
        """`cfg` with this preset's recipe (in place, and returned); every other setting untouched."""
        for name, value in zip(RECIPE_FIELDS, self.values()):
            setattr(cfg.train, name, value)
        cfg.train.init, cfg.train.finetune = self.init, self.finetune  # type: ignore[assignment]
        return cfg


# Both keep the paper's momentum and weight decay. The paper's learning rate 0.01 is tuned for 1000
# classes: the bias-1 initialisation makes fc7's 4096 outputs about 1.5 for every image, so one step
# moves each logit by about lr * 9000 * (p - y). With 10 classes that overshoots (loss ~35 in the first
# steps on the demo data, then chance for an epoch); 0.001 learns at once (measured: val top-5 error
# 2.7% after 2 demo epochs at batch 32, against 26.7% at 0.01).
#
# conv1's initial std (Figure 3 in minutes, issue 13). What conv1 learns in a step hardly depends on its
# own scale (the gradient comes from the layers above: |grad| 0.76 at the paper's std, 0.85 at a tenth of
# it, on a demo batch), and it is smooth (structure score 0.75), but it is small beside the paper's
# N(0, 0.01) noise: in the 120-150 steps a 2-core CPU makes in 5 minutes the noise still dominates and the
# kernels score 0.03 (benchmarks/README.md). Started at a thousandth of that scale, conv1 is what it has
# learned after a few steps. Alone, that cost accuracy: conv1's output was then ~30 times weaker than the
# paper's random one for the first epochs (5-minute validation top-1 error 57% against 47%). At 10 times
# the others' rate conv1 also grows as fast as it needs to: the score passes 0.5 after 5 steps and is
# 0.85 at 5 minutes, and the validation error is no worse at each epoch (54.0% against 55.3% after 3;
# measured side by side, benchmarks/bench_structure.py --baseline).
# The photos preset trains a new last layer alone on fc7's 4096 features (benchmarks/README.md, fine-tuning).
PHOTOS_EPOCHS = 10
PHOTOS_LR = 0.001
QUICK_CONV1_INIT_STD = 1e-5
QUICK_CONV1_LR_SCALE = 10.0
PRESETS = (
    Preset(
        "quick",
        "Quick demo (laptop CPU)",
        epochs=10,
        batch_size=32,
        lr=0.001,
        conv1_init_std=QUICK_CONV1_INIT_STD,
        conv1_lr_scale=QUICK_CONV1_LR_SCALE,
        note="With batch 32, 10 epochs and learning rate 0.001 (paper: 128, 90, 0.01) an epoch of the demo "
        "data takes a minute or two on a laptop CPU. The paper's 0.01 is tuned for 1000 classes; with "
        "10 it overshoots at first. conv1 starts from N(0, 0.00001) instead of the paper's N(0, 0.01) and "
        "learns at 10 times the rate of the other layers, so the first-layer kernels show what they learn "
        "within a minute instead of hours. Momentum and weight decay are the paper's.",
    ),
    Preset(
        "paper",
        "Paper recipe (batch 128, 90 epochs)",
        epochs=90,
        batch_size=128,
        lr=0.01,
        note="Krizhevsky et al. 2012, section 5: batch 128, about 90 epochs, learning rate ÷10 "
        "when validation error stalls (3 times), every layer initialised from N(0, 0.01). Days on "
        "ImageNet; meant for a GPU.",
    ),
    Preset(
        "photos",
        "My photos (quick)",
        epochs=PHOTOS_EPOCHS,
        batch_size=32,
        lr=PHOTOS_LR,
        init="torchvision",
        finetune="head",
        note="Your own classes from a few hundred photos: torchvision's AlexNet trained on ImageNet (its "
        "weights in torch's hub cache) keeps everything it learnt, and only a new last layer learns your "
        "classes, on the 4096 features of its last hidden layer (the paper's Figure 4). Minutes on a laptop CPU.",
    ),
)
QUICK = PRESETS[0]  # the demo data's preset: the app's first launch, `alexgui train` on the demo data
PAPER = PRESETS[1]
ALIASES = {"demo": "quick"}  # other names --preset accepts
CUSTOM = "custom"
CUSTOM_NOTE = ("Custom recipe: epochs, batch size, learning rate, momentum, weight decay or where the run starts "
               "differ from every preset.")


def preset_named(name: str) -> Preset | None:
    """The preset called `name` (or one of its ALIASES), ignoring case; None for any other name."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    return next((p for p in PRESETS if p.name == key), None)


def matching(values: RecipeValues, init: str = "", finetune: str = "all") -> Preset | None:
    """The preset whose recipe these values are, or None (the form then says "Custom").

    Floats are compared to a relative 1e-9: a spin box rounds to its decimals, which these presets'
    values survive exactly, but a value read back from TOML may differ in the last bit."""

    def same(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-12)

    for preset in PRESETS:
        start = preset.init == init and (not init or preset.finetune == finetune)
        if start and all(same(float(a), float(b)) for a, b in zip(preset.values(), values)):
            return preset
    return None

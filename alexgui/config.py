"""Settings for a run: model, data and training, as dataclasses with TOML in and out.

Defaults are the paper's recipe (Krizhevsky, Sutskever & Hinton 2012, section 5) unless a comment
says otherwise. A run directory keeps its RunConfig as config.toml, and every checkpoint carries the
same text, so a model can be rebuilt from the checkpoint file alone.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from alexgui.errors import AlexguiError

Arch = Literal["paper", "torchvision"]
Activation = Literal["relu", "tanh"]
Pooling = Literal["overlapping", "non-overlapping"]
LrnFormula = Literal["paper", "torch"]
Finetune = Literal["head", "fc", "all"]


@dataclass
class ModelConfig:
    arch: Arch = "paper"  # "paper": two towers, 60,965,224 params; "torchvision": single tower, 61,100,840
    num_classes: int = 1000  # replaced by the dataset's class count when training
    activation: Activation = "relu"  # "tanh" is the paper's Figure 1 comparison
    lrn: bool = True  # local response normalisation after ReLU in conv1 and conv2 (paper only)
    # The paper's formula has no division by n; torch/Caffe/cuda-convnet divide alpha by n.
    lrn_formula: LrnFormula = "paper"
    pooling: Pooling = "overlapping"  # window 3 stride 2; "non-overlapping" is the 2/2 ablation
    dropout: float = 0.5  # in fc6 and fc7


@dataclass
class DataConfig:
    data: str = "demo"  # an image folder (class subfolders, optional train/ and val/) or "demo"
    val_fraction: float = 0.1  # held out, seeded, when the folder has no val/ subfolder
    split_seed: int = 0
    resize: int = 256  # short side, then the central resize x resize patch (paper section 2)
    crop: int = 224  # training and test patch; conv1 uses padding 2 so 224 gives 55x55 (as torchvision)
    random_crop: bool = True  # random crop x crop patches of the 256x256 image
    flip: bool = True  # horizontal reflections
    pca_noise: float = 0.1  # std of alpha_i in the PCA colour augmentation; 0 turns it off
    cache: bool = True  # keep decoded 256x256 images in a uint8 memory map so later epochs skip decoding
    workers: int = 2  # DataLoader worker processes when decoding on the fly (cache off)
    ten_crop_eval: bool = False  # validate on 10 crops (slower) instead of the centre crop
    # Symbolic links that lead out of the data folder are skipped unless asked for: a link to another
    # disk is a choice, a link to ".." is a loop that would relabel other classes' images.
    follow_links: bool = False


@dataclass
class TrainConfig:
    epochs: int = 90
    max_steps: int = 0  # stop at this global optimizer step; 0 = no limit
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0005
    # conv1's initial weights are N(0, this) in the paper network (section 5: 0.01, as every layer). The
    # quick demo preset starts conv1 smaller, so that what it learns shows through the initial noise within
    # minutes (presets.py says why); torchvision's network keeps PyTorch's initialisation and ignores it.
    conv1_init_std: float = 0.01
    # conv1's learning rate as a multiple of every other layer's (the paper: 1, "an equal learning rate for
    # all layers"). The quick preset's conv1 starts small and learns faster, so its kernels carry the
    # image's signal as soon as the paper's would (presets.py). The schedule's drops keep the ratio. Paper
    # network only, as conv1_init_std: torchvision's network starts from PyTorch's init at one rate.
    conv1_lr_scale: float = 1.0
    lr_factor: float = 0.1  # divide by 10 ...
    lr_patience: int = 3  # ... when val top-1 error has not improved for this many epochs ...
    lr_max_drops: int = 3  # ... at most three times, as in the paper
    # ... and on a small validation set waits until a fall of this much top-1 error per epoch could stand
    # out of its noise (engine/training/schedule.py); 0 = the paper's rule as written
    lr_resolution: float = 0.01
    # "auto" (CUDA, else Apple's mps, else the CPU; resolved when the run starts, so a resumed run picks
    # the machine it resumes on), "cpu", "cuda", "cuda:N", "mps", or two ("cuda:0,cuda:1"): one paper tower on each
    device: str = "auto"
    bf16: bool = False  # bf16 autocast on CUDA, and on CPUs with bf16 instructions (others: fp32, said once)
    channels_last: bool = False  # NHWC memory format (CUDA only)
    seed: int = 0
    log_every: int = 1  # write a step line to metrics.jsonl every N steps
    checkpoint_minutes: float = 10.0  # also write last.safetensors this often within an epoch; 0 = epoch ends only
    compile: bool = False  # torch.compile the model (CUDA mainly; the first steps are slow while it compiles)
    # Fine-tuning (engine/training/init_source.py). "" starts from random weights, as the paper does;
    # "torchvision" (its ImageNet weights), a checkpoint file or a run folder starts from that network,
    # whose architecture and preprocessing the run then takes. conv1_init_std and conv1_lr_scale do not apply.
    init: str = ""
    finetune: Finetune = "all"  # with init: "head" (the last layer learns), "fc" (fc6-fc8) or "all"
    pretrained_lr_scale: float = 0.1  # with init and finetune "all": the pretrained layers' multiple of lr


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> RunConfig:
        """Every value checked (type, choices, range) before any work is done with it."""
        unknown = sorted(set(d) - set(_SECTIONS))
        if unknown:
            shown = ", ".join(f"[{name}]" for name in unknown)
            raise ConfigError(f"{source}: unknown section(s) {shown}; the sections are [model], [data] and [train]")
        cfg = cls(
            model=_section(ModelConfig, "model", d.get("model", {}), source),
            data=_section(DataConfig, "data", d.get("data", {}), source),
            train=_section(TrainConfig, "train", d.get("train", {}), source),
        )
        smallest = min_crop(cfg.model.pooling)
        if not smallest <= cfg.data.crop <= cfg.data.resize:
            raise ConfigError(
                f"{source} [data] crop: {cfg.data.crop} does not fit; give a crop from {smallest} (the smallest "
                f"input the network takes with {cfg.model.pooling} pooling) to the resize, {cfg.data.resize}"
            )
        return cfg

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    @classmethod
    def from_toml(cls, text: str, source: str = "config.toml") -> RunConfig:
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{source}: not valid TOML ({e})") from None
        return cls.from_dict(d, source)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read ({e})") from None
        return cls.from_toml(text, str(path))


class ConfigError(AlexguiError, ValueError):
    """A settings file or value that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Range:
    """The values a number setting accepts; `open_high` excludes the upper bound (a rate below 1)."""

    low: float
    high: float
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value: float) -> bool:
        # Written so that NaN is in no range.
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return bool(above and below)

    def describe(self, integer: bool) -> str:
        kind = "an integer" if integer else "a number"
        if not (self.open_low or self.open_high):
            return f"{kind} from {_number(self.low)} to {_number(self.high)}"
        low = f"> {_number(self.low)}" if self.open_low else f">= {_number(self.low)}"
        high = f"< {_number(self.high)}" if self.open_high else f"<= {_number(self.high)}"
        return f"{kind} {low} and {high}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


_SECTIONS = ("model", "data", "train")
MAX_WORKERS = 64  # decoding processes; more only adds memory and start-up time on any machine
_SEED = Range(0, 2**32 - 1)  # numpy and torch both take seeds in this range
# The accepted range of every number setting: checked for TOML files and command-line flags alike, so
# a bad value is refused before a folder is created or an image is read.
RANGES: dict[tuple[str, str], Range] = {
    ("model", "num_classes"): Range(1, 100_000),
    ("model", "dropout"): Range(0, 1, open_high=True),
    ("data", "val_fraction"): Range(0, 1, open_high=True),
    ("data", "split_seed"): _SEED,
    ("data", "resize"): Range(1, 4096),
    ("data", "crop"): Range(1, 4096),  # and min_crop(pooling) <= crop <= resize, checked with the others
    ("data", "pca_noise"): Range(0, 10),
    ("data", "workers"): Range(0, MAX_WORKERS),
    ("train", "epochs"): Range(1, 1_000_000),
    ("train", "max_steps"): Range(0, 10**12),
    ("train", "batch_size"): Range(1, 65_536),
    ("train", "lr"): Range(0, 10, open_low=True),
    ("train", "momentum"): Range(0, 1, open_high=True),
    ("train", "weight_decay"): Range(0, 1),
    ("train", "conv1_init_std"): Range(0, 1, open_low=True),
    ("train", "conv1_lr_scale"): Range(0, 1000, open_low=True),
    ("train", "lr_factor"): Range(0, 1, open_low=True),
    ("train", "lr_patience"): Range(1, 1000),
    ("train", "lr_max_drops"): Range(0, 100),
    ("train", "lr_resolution"): Range(0, 1),
    ("train", "seed"): _SEED,
    ("train", "log_every"): Range(1, 10**9),
    ("train", "checkpoint_minutes"): Range(0, 10**6),
    ("train", "pretrained_lr_scale"): Range(0, 1000, open_low=True),
}
# String settings that may be empty: no source to start from means random weights.
MAY_BE_EMPTY = frozenset({("train", "init")})


def min_crop(pooling: str) -> int:
    """The smallest input side the network runs on: conv1 (11/4, padding 2) and three poolings must
    leave at least one pixel (3/2 overlapping pooling needs 63, 2/2 needs 35)."""
    return 63 if pooling == "overlapping" else 35


def check_setting(section: str, name: str, value: Any, where: str) -> Any:
    """`value` for one setting, checked as a TOML value is (type, choices, range); ConfigError names `where`
    (a file's table and key, or a command-line flag) and what is accepted."""
    kind = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}[section]
    return _check_value(get_type_hints(kind)[name], value, where, RANGES.get((section, name)),
                        (section, name) in MAY_BE_EMPTY)


def _section(kind: type, section: str, values: dict[str, Any], source: str) -> Any:
    where = f"{source} [{section}]"
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table")
    hints = get_type_hints(kind)
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    out = {}
    for name, value in values.items():
        out[name] = _check_value(hints[name], value, f"{where} {name}", RANGES.get((section, name)),
                                 (section, name) in MAY_BE_EMPTY)
    return kind(**out)


def _check_value(hint: Any, value: Any, where: str, accepted: Range | None = None, may_be_empty: bool = False) -> Any:
    value = _check_type(hint, value, where)
    if accepted is not None and value not in accepted:
        raise ConfigError(f"{where}: {value!r} is out of range; give {accepted.describe(hint is int)}")
    if hint is str and not may_be_empty and not value.strip():
        raise ConfigError(f"{where}: must not be empty")
    return value


def _check_type(hint: Any, value: Any, where: str) -> Any:
    choices = get_args(hint) if getattr(hint, "__origin__", None) is Literal else ()
    if choices:
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def dumps_toml(d: dict[str, dict[str, Any]]) -> str:
    """Write nested tables of scalars as TOML (the standard library reads TOML but does not write it)."""
    lines: list[str] = []
    for table, values in d.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_scalar(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")

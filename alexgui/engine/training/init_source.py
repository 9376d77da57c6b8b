"""Fine-tuning: where a run starts when it starts from a trained network, and what it trains.

    SOURCE (TrainConfig.init)  "torchvision": torchvision's ImageNet AlexNet from the model zoo (the hub
                               cache, or downloaded when allowed); a run folder (its best checkpoint, else
                               its last); an alexgui .safetensors checkpoint; a torchvision state dict
                               (.pth, .pt, .bin, or .safetensors with torchvision's key names)
    MODE (TrainConfig.finetune) "head": only the new last layer learns; "fc": fc6, fc7 and the last layer;
                               "all": everything, the pretrained layers at pretrained_lr_scale times the rate

The network's architecture and preprocessing are the source's (a model trained on ImageNet's mean and
standard deviation sees its input that way still; a paper checkpoint keeps its mean image and PCA). The
last layer is replaced by a new one for the dataset's classes, unless the dataset's classes are exactly
the source's. Frozen layers have requires_grad off: autograd computes nothing for them (in "head" the
backward pass is fc8's alone), and the optimiser never sees them (no weight decay, no momentum).

Every problem is a FineTuneError naming the file; nothing here writes anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexgui.config import ConfigError, ModelConfig, RunConfig
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.model import zoo
from alexgui.engine.model.base import CONV_LAYERS, AlexNetBase
from alexgui.engine.model.torchvision_alexnet import WeightsError, torchvision_model_from_state
from alexgui.engine.store.checkpoint import CheckpointError, load_checkpoint, split_prefix, weights_fingerprint
from alexgui.engine.training.control import TrainingError
from alexgui.errors import Cancelled

FINETUNE_MODES = ("head", "fc", "all")
FROZEN_LAYERS: dict[str, tuple[str, ...]] = {"head": (*CONV_LAYERS, "fc6", "fc7"), "fc": CONV_LAYERS, "all": ()}
TORCHVISION_SOURCE = "torchvision"
MODE_TITLES = {
    "head": "the last layer",
    "fc": "the fully connected layers (fc6, fc7, fc8)",
    "all": "every layer",
}


class FineTuneError(TrainingError):
    """A source that cannot be fine-tuned as asked; the message names the file and the problem."""


@dataclass
class InitSource:
    """A trained network to start from, loaded and checked."""

    spec: str  # what the user named ("torchvision", a path)
    path: Path  # the weights file read
    model: ModelConfig  # the source's network (num_classes: the source's)
    state: dict[str, torch.Tensor]  # its weights, in our model's state_dict names
    class_names: list[str]
    preprocess: Preprocess
    fingerprint: str
    lineage: dict[str, Any] | None = field(default=None)  # the source's own lineage, when it was fine-tuned too

    @property
    def arch(self) -> str:
        return self.model.arch


def resolve_init_source(
    spec: str,
    allow_download: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> InitSource:
    """The network `spec` names (see the module docstring), or FineTuneError."""
    text = spec.strip()
    if not text:
        raise FineTuneError("no source given to start from; give 'torchvision', a checkpoint file or a run folder")
    if text.lower() in zoo.ALIASES:
        entry = zoo.default_entry()
        try:
            path = zoo.ensure_weights(entry, allow_download=allow_download, progress=progress, stop=stop)
        except Cancelled:
            raise
        except zoo.ZooError as e:
            raise FineTuneError(str(e)) from None
        return _torchvision_file(TORCHVISION_SOURCE, path)
    path = Path(text).expanduser()
    if path.is_dir():
        return _run_folder(text, path)
    if not path.exists():
        raise FineTuneError(f"{path}: no such file or folder (give 'torchvision', a checkpoint file or a run folder)")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        raise FineTuneError(f"{path}: an ONNX file cannot be trained further (it has no gradients); give the "
                            "checkpoint or run folder it was exported from")
    if suffix in (".pth", ".pt", ".bin"):
        return _torchvision_file(text, path)
    if suffix == ".safetensors":
        return _checkpoint_file(text, path)
    raise FineTuneError(f"{path}: unknown model file type {suffix or '(no suffix)'}; expected a .safetensors "
                        "checkpoint, a torchvision .pth state dict or a run folder")


def _run_folder(spec: str, path: Path) -> InitSource:
    from alexgui.engine.store.rundir import RunDir, RunDirError

    try:
        run = RunDir.open(path)
    except (RunDirError, ConfigError) as e:
        raise FineTuneError(str(e)) from None
    for candidate in (run.best_checkpoint, run.last_checkpoint):
        if candidate.exists():
            return _checkpoint_file(spec, candidate)
    raise FineTuneError(f"{path}: the run has no checkpoint yet (looked for {run.best_checkpoint.name} and "
                        f"{run.last_checkpoint.name} in {run.checkpoints_dir})")


def _load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        checkpoint = load_checkpoint(path)  # never unpickles code: safetensors, or torch's weights_only loader
    except CheckpointError as e:
        raise FineTuneError(str(e)) from None
    return checkpoint.tensors, checkpoint.meta


def _torchvision_file(spec: str, path: Path, tensors: dict[str, torch.Tensor] | None = None) -> InitSource:
    state = tensors if tensors is not None else _load(path)[0]
    try:
        model = torchvision_model_from_state(state, source=str(path))
    except WeightsError as e:
        raise FineTuneError(str(e)) from None
    entry = zoo.default_entry()
    wnids = entry.wnids if entry.wnids and model.num_classes == len(entry.wnids) else None
    names = list(wnids) if wnids else [f"class {i}" for i in range(model.num_classes)]
    return InitSource(spec, path, ModelConfig(arch="torchvision", num_classes=model.num_classes),
                      model.state_dict(), names, Preprocess.imagenet_mean_std(), weights_fingerprint(state))


def _checkpoint_file(spec: str, path: Path) -> InitSource:
    tensors, meta = _load(path)
    if "config" not in meta and "features.0.weight" in tensors:
        return _torchvision_file(spec, path, tensors)
    missing = [k for k in ("config", "class_names", "preprocessing") if k not in meta]
    if missing:
        raise FineTuneError(f"{path}: not an alexgui checkpoint (its metadata lacks {', '.join(missing)})")
    try:
        cfg = RunConfig.from_toml(meta["config"], f"{path} (config)")
        preprocess = Preprocess.from_description(meta["preprocessing"], split_prefix(tensors, "stats."))
    except (ConfigError, ValueError, KeyError, TypeError) as e:
        raise FineTuneError(f"{path}: its settings or preprocessing cannot be used ({e})") from None
    names = meta["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise FineTuneError(f"{path}: the metadata field 'class_names' should be a non-empty list of names")
    state = split_prefix(tensors, "model.")
    cfg.model.num_classes = len(names)
    try:  # the weights must fit the network the settings describe before anything is built on them
        from alexgui.engine.model.networks import build_model

        build_model(cfg.model).load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as e:
        detail = str(e).strip().splitlines()
        raise FineTuneError(f"{path}: its weights do not fit the network its settings describe "
                            f"({detail[1].strip() if len(detail) > 1 else detail[0] if detail else type(e).__name__})") from None
    lineage = meta.get("lineage") if isinstance(meta.get("lineage"), dict) else None
    return InitSource(spec, path, cfg.model, state, list(names), preprocess, weights_fingerprint(state), lineage)


def adopt_source(cfg: RunConfig, source: InitSource) -> None:
    """`cfg` takes the source's network, crop and resize (in place); the run's own dropout is kept, as is every
    training setting."""
    dropout = cfg.model.dropout
    cfg.model = ModelConfig(**{**source.model.__dict__, "dropout": dropout})
    cfg.data.crop = source.preprocess.crop
    cfg.data.resize = source.preprocess.resize


def check_arch(requested: str | None, source: InitSource) -> None:
    """FineTuneError when the user asked for an architecture the source is not."""
    if requested is not None and requested != source.arch:
        raise FineTuneError(f"{source.path}: this is the {source.arch} network; it cannot be fine-tuned as "
                            f"--arch {requested} (leave --arch out: the architecture comes from the source)")


def head_parameter_names(model: AlexNetBase) -> set[str]:
    """The state_dict names of the last layer (fc8), for either architecture."""
    ids = {id(p) for m in model.layer_modules("fc8") for p in m.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def load_source_weights(model: AlexNetBase, source: InitSource, class_names: list[str]) -> bool:
    """The source's weights into `model` (built for the dataset's classes). Returns whether the source's
    last layer was kept (the dataset's classes are exactly the source's); otherwise the new one keeps the
    initialisation the model was built with."""
    keep_head = list(class_names) == list(source.class_names)
    head = head_parameter_names(model)
    state = {k: v for k, v in source.state.items() if keep_head or k not in head}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise FineTuneError(f"{source.path}: its weights do not fit the network ({str(e).strip().splitlines()[-1]})") from None
    if unexpected or set(missing) - (set() if keep_head else head):
        raise FineTuneError(f"{source.path}: its weights do not fit the network (missing {sorted(missing)[:3]}, "
                            f"unexpected {sorted(unexpected)[:3]})")
    return keep_head


def freeze(model: AlexNetBase, mode: str) -> list[str]:
    """Turn gradients off for the layers `mode` keeps fixed; returns their names."""
    if mode not in FROZEN_LAYERS:
        raise FineTuneError(f"finetune must be one of {', '.join(FINETUNE_MODES)}, not {mode!r}")
    frozen = FROZEN_LAYERS[mode]
    for layer in frozen:
        for module in model.layer_modules(layer):
            for p in module.parameters():
                p.requires_grad_(False)
    return list(frozen)


def learning_rate_scales(model: nn.Module, head_names: set[str], mode: str, pretrained_scale: float,
                         head_kept: bool) -> dict[str, float]:
    """Each trainable parameter's multiple of the learning rate: a new last layer learns at the full rate;
    in "all", every pretrained parameter at `pretrained_scale` (in "head" and "fc" the layers that learn
    do so at the full rate)."""
    scales = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        pretrained = head_kept or name not in head_names
        scales[name] = pretrained_scale if mode == "all" and pretrained else 1.0
    return scales


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(parameters that learn, all parameters)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def lineage(source: InitSource, mode: str, head_kept: bool) -> dict[str, Any]:
    """What a fine-tuned checkpoint records of where it came from (its metadata's "lineage")."""
    out: dict[str, Any] = {
        "source": source.spec,
        "path": str(source.path),
        "fingerprint": source.fingerprint,
        "arch": source.arch,
        "source_classes": len(source.class_names),
        "finetune": mode,
        "head": "kept" if head_kept else "new",
    }
    if source.lineage:
        out["parent"] = source.lineage
    return out


def describe_lineage(info: dict[str, Any]) -> str:
    """One line for `alexgui summary` and the app: "fine-tuned from torchvision (…) , the last layer, new fc8"."""
    source = info.get("source", "?")
    mode = MODE_TITLES.get(str(info.get("finetune")), str(info.get("finetune", "?")))
    classes = info.get("source_classes", "?")
    head = "its last layer kept" if info.get("head") == "kept" else f"a new last layer (the source had {classes} classes)"
    fingerprint = str(info.get("fingerprint", ""))[:12]
    return f"fine-tuned from {source} (weights {fingerprint}): trained {mode}, {head}"


def parameter_counts(arch: str, num_classes: int) -> dict[str, tuple[int, int]]:
    """For each fine-tune mode, (parameters that learn, all parameters) of `arch` with `num_classes`
    outputs: what the app shows beside the choice. Built on the meta device: no memory, no time."""
    from alexgui.engine.model.networks import build_model

    counts = {}
    for mode in FINETUNE_MODES:
        with torch.device("meta"):
            model = build_model(ModelConfig(arch=arch, num_classes=max(num_classes, 1)))  # type: ignore[arg-type]
        freeze(model, mode)
        counts[mode] = trainable_parameters(model)
    return counts


def quick_check(spec: str) -> str:
    """The source's architecture, from what can be read at once (a checkpoint's header, a run's settings,
    the hub cache's listing), for a window that must not wait for 230 MB to load; FineTuneError for a
    source that is plainly missing or of the wrong kind. The run checks the weights themselves."""
    from alexgui.engine.store.checkpoint import read_meta

    text = spec.strip()
    if text.lower() in zoo.ALIASES:
        entry = zoo.default_entry()
        if zoo.find_weights(entry) is None:
            raise FineTuneError(zoo.offline_help(entry, "they are not in the hub cache yet"))
        return "torchvision"
    path = Path(text).expanduser()
    if path.is_dir():
        from alexgui.engine.store.rundir import RunDir, RunDirError

        try:
            run = RunDir.open(path)
            arch = run.config().model.arch
        except (RunDirError, ConfigError) as e:
            raise FineTuneError(str(e)) from None
        if not (run.best_checkpoint.exists() or run.last_checkpoint.exists()):
            raise FineTuneError(f"{path}: the run has no checkpoint yet")
        return arch
    if not path.is_file():
        raise FineTuneError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in (".pth", ".pt", ".bin"):
        return "torchvision"
    if suffix != ".safetensors":
        raise FineTuneError(f"{path}: not a checkpoint (.safetensors), a torchvision state dict (.pth) or a run folder")
    try:
        meta = read_meta(path)
        return RunConfig.from_toml(meta["config"], str(path)).model.arch if "config" in meta else "torchvision"
    except (CheckpointError, ConfigError, KeyError, TypeError) as e:
        raise FineTuneError(f"{path}: cannot be read as a checkpoint ({e})") from None

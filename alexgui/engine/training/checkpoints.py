"""The training checkpoint's schema: what a run saves so that it can resume exactly where it stopped.

A training checkpoint is an ordinary alexgui checkpoint (store/checkpoint.py: safetensors tensors plus
JSON metadata, no pickle) holding:
    tensors  model.<state_dict key>         the weights (names independent of the placement)
             optim.<i>.momentum_buffer      SGD's momentum, by parameter index
             stats.*                        the preprocessing statistics (the paper's mean image, PCA)
    meta     format, alexgui_version, config (the run's TOML), arch, class_names, preprocessing,
             epoch, batch (next batch in the epoch), step, epoch_sums, world_size, schedule, rng,
             saved_at
The model can be rebuilt from the file alone (config, class names and preprocessing are inside), and
inference reads the same files (inference/predict.py).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexgui import __version__
from alexgui.config import ConfigError, RunConfig
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.events import CheckpointSaved, StepDone
from alexgui.engine.store.checkpoint import Checkpoint, CheckpointError, load_checkpoint, read_meta, split_prefix
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.control import TrainingError
from alexgui.engine.training.schedule import PlateauSchedule

CHECKPOINT_FORMAT = "alexgui-checkpoint/1"


def _zero_sums() -> dict[str, float]:
    return {"loss": 0.0, "top1": 0.0, "top5": 0.0, "n": 0}


@dataclass
class Position:
    """Where a run is: steps taken, the epoch, the next batch within it, and the epoch's running sums."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    epoch_sums: dict[str, float] = field(default_factory=_zero_sums)

    def accumulate(self, loss: float, top1: float, top5: float, n: int) -> None:
        """Add a step's loss and accuracies over n images to the epoch's running sums."""
        s = self.epoch_sums
        s["loss"] += loss * n
        s["top1"] += top1 * n
        s["top5"] += top5 * n
        s["n"] += n

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        self.epoch_sums = _zero_sums()


def load_resume_checkpoint(path: Path) -> Checkpoint | None:
    """The run's last training checkpoint, or None when nothing was saved yet (the run starts over in
    the same folder). CheckpointError for a file that is not a training checkpoint or whose metadata
    lacks a field resuming needs (the message names the file and the field)."""
    if not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    check_meta(path, checkpoint.meta)
    return checkpoint


# What resuming reads from a checkpoint's metadata, and the JSON type each must have.
_META_FIELDS: dict[str, tuple[type, str]] = {
    "config": (str, "the run's settings as TOML text"),
    "class_names": (list, "a list of class names"),
    "preprocessing": (dict, "a table describing the preprocessing"),
    "epoch": (int, "a whole number >= 0"),
    "batch": (int, "a whole number >= 0"),
    "step": (int, "a whole number >= 0"),
    "epoch_sums": (dict, "a table of loss, top1, top5 and n"),
    "schedule": (dict, "the learning-rate schedule's state"),
}


def check_meta(path: Path, meta: dict[str, Any]) -> None:
    """CheckpointError naming the file and the field when `meta` is not a training checkpoint's."""
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"not an alexgui training checkpoint (format {meta.get('format')!r})")
    for name, (kind, what) in _META_FIELDS.items():
        if name not in meta:
            raise CheckpointError(path, f"the metadata field {name!r} is missing (it should be {what})")
        value: Any = meta[name]
        if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, int) and value < 0):
            raise CheckpointError(path, f"the metadata field {name!r} is {value!r:.60}, not {what}")
    if not meta["class_names"] or not all(isinstance(c, str) for c in meta["class_names"]):
        raise CheckpointError(path, "the metadata field 'class_names' should be a non-empty list of names")
    sums = meta["epoch_sums"]
    if not all(isinstance(sums.get(k), (int, float)) and not isinstance(sums.get(k), bool) for k in _zero_sums()):
        raise CheckpointError(path, f"the metadata field 'epoch_sums' is {sums!r:.60}, not a table of loss, top1, top5 and n")
    world = meta.get("world_size", 1)
    if not isinstance(world, int) or isinstance(world, bool) or world < 1:
        raise CheckpointError(path, f"the metadata field 'world_size' is {world!r:.60}, not a whole number >= 1")
    try:
        PlateauSchedule.from_state(meta["schedule"])
        RunConfig.from_toml(meta["config"], "config")
    except (TypeError, ValueError, ConfigError) as e:
        field_name = "config" if isinstance(e, ConfigError) else "schedule"
        raise CheckpointError(path, f"the metadata field {field_name!r} cannot be used ({e})") from None


def check_resumable(run: RunDir) -> None:
    """TrainingError when resuming would silently start over: the log records training but the
    checkpoint it would continue from is gone. Writes nothing."""
    if run.last_checkpoint.exists():
        return
    events, _ = run.events()
    steps = max((e.step for e in events if isinstance(e, (StepDone, CheckpointSaved))), default=0)
    if steps:
        raise TrainingError(
            f"{run.last_checkpoint}: missing, but the log records training up to step {steps}; there is "
            "nothing to resume from. Start the run over in this folder with --restart (its log and "
            "checkpoints are cleared), or train into a new folder"
        )


def saved_step(run: RunDir) -> int | None:
    """The step of the run's last checkpoint, from its header alone (cheap); None when there is none."""
    if not run.last_checkpoint.exists():
        return None
    meta = read_meta(run.last_checkpoint)
    check_meta(run.last_checkpoint, meta)
    return int(meta["step"])


def resumed_config(cfg: RunConfig, checkpoint: Checkpoint) -> RunConfig:
    """The settings a resumed run trains with: the weights fix the network (and its crop); the schedule
    and stopping settings (epochs, max steps, device, workers) are the caller's, which is how a user
    extends a finished run. The caller's config is not changed."""
    saved = RunConfig.from_toml(checkpoint.meta["config"], f"{checkpoint.path} (config)")
    out = copy.deepcopy(cfg)
    out.model = saved.model
    out.data.crop = saved.data.crop
    out.data.resize = saved.data.resize  # the preprocessing (a mean image of this size) is the checkpoint's
    return out


def restore_position(checkpoint: Checkpoint, world_size: int) -> Position:
    meta = checkpoint.meta
    saved_world = int(meta.get("world_size", 1))
    if saved_world != world_size and int(meta["batch"]) != 0:
        raise TrainingError(
            f"{checkpoint.path}: saved mid-epoch by {saved_world} process(es); resume it with "
            f"{saved_world} (this run has {world_size}), or from a checkpoint saved at an epoch end"
        )
    return Position(int(meta["step"]), int(meta["epoch"]), int(meta["batch"]), dict(meta["epoch_sums"]))


def load_weights(checkpoint: Checkpoint, model: nn.Module) -> None:
    """The checkpoint's weights into `model`; CheckpointError when they do not fit it."""
    try:
        model.load_state_dict(split_prefix(checkpoint.tensors, "model."))
    except RuntimeError as e:
        problem = str(e).strip().splitlines()
        detail = problem[1].strip() if len(problem) > 1 else problem[0] if problem else type(e).__name__
        raise CheckpointError(checkpoint.path, f"its weights do not fit the network its settings describe ({detail})") from None


def restore_momentum(checkpoint: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    buffers = split_prefix(checkpoint.tensors, "optim.")
    for i, p in enumerate(model.parameters()):
        buf = buffers.get(f"{i}.momentum_buffer")
        if buf is not None:
            optimizer.state[p]["momentum_buffer"] = buf.to(p.device).clone()


def checkpoint_tensors(model: nn.Module, optimizer: torch.optim.Optimizer, preprocess: Preprocess) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v.detach() for k, v in model.state_dict().items()}
    for i, p in enumerate(model.parameters()):
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"optim.{i}.momentum_buffer"] = buf
    tensors.update(preprocess.stat_tensors())
    return tensors


def checkpoint_meta(
    cfg: RunConfig,
    class_names: list[str],
    preprocess: Preprocess,
    position: Position,
    world_size: int,
    schedule: PlateauSchedule,
) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "alexgui_version": __version__,
        "config": cfg.to_toml(),
        "arch": cfg.model.arch,
        "class_names": class_names,
        "preprocessing": preprocess.describe(),
        "epoch": position.epoch,
        "batch": position.batch,
        "step": position.step,
        "epoch_sums": position.epoch_sums,
        "world_size": world_size,
        "schedule": schedule.state(),
        "rng": {"seed": cfg.train.seed, "step": position.step, "scheme": "order from (seed, epoch); draws from (seed, step)"},
        "saved_at": time.time(),
    }

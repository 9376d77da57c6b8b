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
from alexgui.config import RunConfig
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.store.checkpoint import Checkpoint, load_checkpoint, split_prefix
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

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        self.epoch_sums = _zero_sums()


def load_resume_checkpoint(path: Path) -> Checkpoint | None:
    """The run's last training checkpoint, or None when nothing was saved yet (the run starts over in
    the same folder). TrainingError for a file that is not a training checkpoint."""
    if not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    if checkpoint.meta.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not an alexgui training checkpoint (format {checkpoint.meta.get('format')!r})")
    return checkpoint


def resumed_config(cfg: RunConfig, checkpoint: Checkpoint) -> RunConfig:
    """The settings a resumed run trains with: the weights fix the network (and its crop); the schedule
    and stopping settings (epochs, max steps, device, workers) are the caller's, which is how a user
    extends a finished run. The caller's config is not changed."""
    saved = RunConfig.from_toml(checkpoint.meta["config"], f"{checkpoint.path} (config)")
    out = copy.deepcopy(cfg)
    out.model = saved.model
    out.data.crop = saved.data.crop
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

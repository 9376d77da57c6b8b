"""Everything a run needs before its first step: the data (prepared once per machine under
torchrun), the preprocessing (from the checkpoint, or the training set's statistics), the pre-flight
summary, and the model on its device(s)."""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

import torch

from alexgui.config import RunConfig
from alexgui.engine.data.dataset import PreparedData, prepare_dataset
from alexgui.engine.data.stats import DataStats, compute_stats
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.events import Event
from alexgui.engine.model.base import AlexNetBase
from alexgui.engine.model.placement import place_model
from alexgui.engine.store.checkpoint import Checkpoint
from alexgui.engine.training.background import reporting
from alexgui.engine.training.control import TrainingError
from alexgui.engine.training.distributed import DistContext, barrier
from alexgui.paths import cache_dir


def prepare_data(
    cfg: RunConfig, dist: DistContext, step: int, epoch: int, stop: threading.Event
) -> Generator[Event, None, PreparedData]:
    """The scanned, decoded (and cached) dataset, reporting progress as events."""
    if not dist.active:
        return (yield from reporting(prepare_dataset, step, epoch, cfg.data, cache_dir(), stop=stop))
    # Who fills a decoded-image cache (and makes the demo set) must not race another process doing
    # the same: rank 0 first, then the first process of each other machine, then everyone else.
    my_turn = 0 if dist.is_main else 1 if dist.local_rank == 0 else 2
    data: PreparedData | None = None
    for turn in range(3):
        if turn == my_turn:
            data = yield from reporting(prepare_dataset, step, epoch, cfg.data, cache_dir(), stop=stop)
        barrier(dist)
    assert data is not None
    return data


def preflight(cfg: RunConfig, data: PreparedData) -> dict[str, Any]:
    """What preflight.json says about the data: classes, counts, and every file skipped with its reason."""
    return {
        "data": cfg.data.data,
        "class_names": list(data.class_names),
        "train_images": len(data.train),
        "val_images": len(data.val),
        "skipped": [{"path": s.path, "reason": s.reason} for s in data.skipped],
    }


def training_preprocess(
    cfg: RunConfig, data: PreparedData, checkpoint: Checkpoint | None, step: int, epoch: int, stop: threading.Event
) -> Generator[Event, None, Preprocess]:
    """The checkpoint's preprocessing when resuming; else the training set's statistics, computed."""
    if checkpoint is not None:
        if list(checkpoint.meta["class_names"]) != list(data.class_names):
            raise TrainingError(
                f"{checkpoint.path}: the checkpoint's classes {checkpoint.meta['class_names']} "
                f"differ from the dataset's {data.class_names}; resume needs the same classes"
            )
        return Preprocess.from_description(checkpoint.meta["preprocessing"], checkpoint.tensors)
    stats: DataStats = yield from reporting(compute_stats, step, epoch, data.train, stage="mean image and PCA", stop=stop)
    if cfg.model.arch == "paper":
        return Preprocess.from_stats(stats, crop=cfg.data.crop)
    return Preprocess.imagenet_mean_std(crop=cfg.data.crop, stats=stats)  # with this dataset's PCA noise


def place(model: AlexNetBase, devices: list[torch.device], cfg: RunConfig) -> AlexNetBase:
    """Onto the device(s), in the memory format and compiled as the config asks."""
    model = place_model(model, devices)
    if cfg.train.channels_last and devices[0].type == "cuda":
        model.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        model.compile()  # in place: parameter names (and so checkpoints) stay the same
    return model

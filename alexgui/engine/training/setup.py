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
from alexgui.engine.model.networks import build_model
from alexgui.engine.model.placement import place_model
from alexgui.engine.store.checkpoint import Checkpoint, CheckpointError
from alexgui.engine.training.background import reporting
from alexgui.engine.training.checkpoints import load_weights, restore_momentum
from alexgui.engine.training.control import TrainingError
from alexgui.engine.training.distributed import DistContext, barrier, wrap_model
from alexgui.engine.training.init_source import (
    InitSource,
    freeze,
    head_parameter_names,
    learning_rate_scales,
    load_source_weights,
)
from alexgui.engine.training.schedule import PlateauSchedule
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
    cfg: RunConfig,
    data: PreparedData,
    checkpoint: Checkpoint | None,
    step: int,
    epoch: int,
    stop: threading.Event,
    source: InitSource | None = None,
) -> Generator[Event, None, Preprocess]:
    """The checkpoint's preprocessing when resuming; the source's when fine-tuning (the network was trained
    to see its input that way); else the training set's statistics, computed."""
    if checkpoint is None and source is not None:
        return source.preprocess
    if checkpoint is not None:
        if list(checkpoint.meta["class_names"]) != list(data.class_names):
            raise TrainingError(
                f"{checkpoint.path}: the checkpoint's classes {checkpoint.meta['class_names']} "
                f"differ from the dataset's {data.class_names}; resume needs the same classes"
            )
        try:
            return Preprocess.from_description(checkpoint.meta["preprocessing"], checkpoint.tensors)
        except (KeyError, TypeError, ValueError) as e:  # crafted or damaged metadata
            raise CheckpointError(checkpoint.path, f"the metadata field 'preprocessing' cannot be used ({e})") from None
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


def sgd(model: AlexNetBase, cfg: RunConfig, lr: float, head_kept: bool = False) -> torch.optim.SGD:
    """The paper's SGD over every parameter that learns. Parameters are grouped by their multiple of the rate,
    each group carrying it as "lr_scale", which the schedule's drops multiply (loop.py): in the paper network
    trained from scratch, conv1 (weights and biases) at conv1_lr_scale when that is not 1 (it goes with
    conv1_init_std, which torchvision's network ignores too); when fine-tuning, the scales of
    init_source.learning_rate_scales, and frozen parameters in no group at all (no weight decay on them).
    The momentum buffers follow model.parameters(), not the groups, so checkpoints are the same either way."""
    if cfg.train.init:
        by_name = learning_rate_scales(model, head_parameter_names(model), cfg.train.finetune,
                                       cfg.train.pretrained_lr_scale, head_kept)
    else:
        conv1 = {id(p) for module in model.layer_modules("conv1") for p in module.parameters()}
        scale = cfg.train.conv1_lr_scale if model.arch == "paper" else 1.0
        by_name = {name: scale if id(p) in conv1 else 1.0 for name, p in model.named_parameters()}
    named = dict(model.named_parameters())
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, scale in by_name.items():
        groups.setdefault(scale, []).append(named[name])
    param_groups = [{"params": params, "lr": lr * scale, "lr_scale": scale} for scale, params in groups.items()]
    return torch.optim.SGD(param_groups, lr=lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)


def trainable(
    cfg: RunConfig,
    checkpoint: Checkpoint | None,
    devices: list[torch.device],
    dist: DistContext,
    source: InitSource | None = None,
    class_names: list[str] | None = None,
) -> tuple[AlexNetBase, torch.nn.Module, PlateauSchedule, torch.optim.SGD, bool]:
    """The model placed on its device(s), what a step calls (DDP around it when distributed), the
    learning-rate schedule, the optimiser (fresh, or as the checkpoint left them), and whether a
    fine-tuned run kept its source's last layer. cfg.model.num_classes must already be the dataset's.
    A fine-tuned run (cfg.train.init) starts from `source` and freezes what cfg.train.finetune keeps fixed,
    resumed or not."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    head_kept = False
    if checkpoint is not None:
        load_weights(checkpoint, model)
        lineage = checkpoint.meta.get("lineage")
        head_kept = isinstance(lineage, dict) and lineage.get("head") == "kept"
    elif source is not None:
        head_kept = load_source_weights(model, source, list(class_names or []))
    else:
        model.start_conv1_at(cfg.train.conv1_init_std)
    if cfg.train.init:
        freeze(model, cfg.train.finetune)
    model = place(model, devices, cfg)
    schedule = (
        PlateauSchedule.from_state(checkpoint.meta["schedule"])
        if checkpoint is not None
        else PlateauSchedule(
            lr=cfg.train.lr,
            factor=cfg.train.lr_factor,
            patience=cfg.train.lr_patience,
            max_drops=cfg.train.lr_max_drops,
            resolution=cfg.train.lr_resolution,
        )
    )
    optimizer = sgd(model, cfg, schedule.lr, head_kept)
    if checkpoint is not None:
        restore_momentum(checkpoint, model, optimizer)
    return model, wrap_model(model, dist, devices), schedule, optimizer, head_kept

"""Evaluation: top-1 and top-5 error with the centre crop or the paper's ten crops (section 4.1: the
softmax averaged over the four corner patches, the centre patch and their reflections)."""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F

from alexgui.config import RunConfig
from alexgui.engine.data.dataset import ImageSet
from alexgui.engine.data.transforms import Preprocess, mean_over_crops
from alexgui.engine.model.base import AlexNetBase
from alexgui.engine.training.distributed import (
    DistContext,
    reduce_means,
    shard_image_set,
)
from alexgui.engine.training.precision import autocast, memory_format


def accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1, 5)) -> list[float]:
    """Fraction of rows whose target is among the k highest scores, for each k (k capped at the class count)."""
    return hit_rates(output, target, topk).tolist()


def hit_rates(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """accuracy() as a tensor on the output's device, so callers can fetch it with other values in one copy."""
    maxk = min(max(topk), output.shape[1])
    _, pred = output.topk(maxk, dim=1)
    hit = pred.eq(target.view(-1, 1))
    return torch.stack([hit[:, : min(k, maxk)].any(dim=1).float().mean() for k in topk])


@torch.no_grad()
def evaluate(
    model: AlexNetBase,
    preprocess: Preprocess,
    images: ImageSet,
    batch_size: int,
    device: torch.device,
    ten_crop: bool = False,
    channels_last: bool = False,
    bf16: bool = False,
    stop: threading.Event | None = None,
) -> tuple[float, float, float]:
    """Mean loss, top-1 error and top-5 error over `images`; 10 crops average the softmax (paper 4.1)."""
    was_training = model.training
    model.eval()
    total, loss_sum, top1_hits, top5_hits = 0, 0.0, 0.0, 0.0
    try:
        for u8, labels in images.batches(np.arange(len(images)), batch_size, workers=0, pin_memory=device.type == "cuda"):
            if stop is not None and stop.is_set():
                break
            u8, labels = u8.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with autocast(device, bf16):
                x, crops = preprocess.test_batch(u8, ten_crop)
                probs = mean_over_crops(model(memory_format(x, channels_last)).float().softmax(dim=1), crops)
            batch_loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum")
            batch_loss, top1, top5 = torch.cat([batch_loss.reshape(1), hit_rates(probs, labels)]).tolist()
            loss_sum += batch_loss
            n = labels.shape[0]
            top1_hits += top1 * n
            top5_hits += top5 * n
            total += n
    finally:
        model.train(was_training)
    if total == 0:
        return math.nan, math.nan, math.nan
    return loss_sum / total, 1.0 - top1_hits / total, 1.0 - top5_hits / total


def validate(
    model: AlexNetBase, preprocess: Preprocess, images: ImageSet, cfg: RunConfig, device: torch.device, dist: DistContext
) -> tuple[float, float, float]:
    """A training run's validation loss and errors, as its settings ask; split across the ranks and
    reduced when distributed."""
    mine = shard_image_set(images, dist.rank, dist.world_size) if dist.active else images
    result = evaluate(
        model,
        preprocess,
        mine,
        cfg.train.batch_size,
        device,
        ten_crop=cfg.data.ten_crop_eval,
        channels_last=cfg.train.channels_last and device.type == "cuda",
        bf16=cfg.train.bf16,
    )
    if not dist.active:
        return result
    loss, top1_err, top5_err = reduce_means(dist, result, len(mine))
    return loss, top1_err, top5_err

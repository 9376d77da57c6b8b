"""One training step of the whole network: the paper's augmentation, forward, loss, backward, update.

Separate from the loop (loop.py) so that what a step computes reads in one place: the crops, flips
and PCA colour noise drawn from the step's own seed (so a resumed run repeats the same draws), bf16
autocast and channels-last where asked, the loss in float32, and one device-to-host copy for the
step's loss and accuracies. The head fine-tune's step on cached features is head_features.head_step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexgui.config import RunConfig
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.training.evaluation import hit_rates
from alexgui.engine.training.precision import autocast, memory_format


def network_step(cfg: RunConfig, step_model: nn.Module, optimizer: torch.optim.Optimizer, preprocess: Preprocess,
                 u8: torch.Tensor, labels: torch.Tensor, step_seed: int) -> tuple[float, float, float]:
    """Train on one batch of decoded images (on the step's device); returns (loss, top-1, top-5 accuracy)."""
    generator = torch.Generator().manual_seed(step_seed)
    torch.manual_seed(step_seed)  # dropout's draws
    x = preprocess.train_batch(
        u8,
        generator,
        random_crop=cfg.data.random_crop,
        flip=cfg.data.flip,
        pca_noise=cfg.data.pca_noise if cfg.model.arch == "paper" else 0.0,
    )
    device = u8.device
    x = memory_format(x, cfg.train.channels_last and device.type == "cuda")
    with autocast(device, cfg.train.bf16):
        logits = step_model(x)
        loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():  # one device-to-host copy per step, not one per number
        values = torch.cat([loss.detach().reshape(1), hit_rates(logits.detach().float(), labels)])
    loss_value, top1, top5 = values.tolist()
    return loss_value, top1, top5

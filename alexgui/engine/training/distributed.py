"""Data-parallel training over processes and machines (torch.distributed, launched by torchrun).

Every process holds one whole model (on one device, or the paper's two towers on a pair of GPUs) and
trains on its share of each global batch; DistributedDataParallel averages the gradients, so W
processes at batch B make the same update as one process at batch W*B with the same order:

    epoch order   the same permutation of the training set on every rank, from (seed, epoch)
    global batch  the next W*B images of that order; rank r takes its r-th contiguous slice of B
    epoch end     the order is cut to a multiple of W so that every rank gets the same number of
                  images in every step (an epoch drops at most W-1 images); the last global batch may
                  be smaller, split equally again

Rank 0 alone writes the run directory the app follows; the other ranks read it (to resume) and write
nothing. The logged loss and errors are sums all-reduced over the ranks, so they describe the global
batch; validation is split across the ranks and reduced the same way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from alexgui.engine.data.dataset import ImageSet
from alexgui.engine.events import Event
from alexgui.engine.store.rundir import RunDir
from alexgui.errors import AlexguiError

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(AlexguiError, RuntimeError):
    """Distributed training cannot start; the message says what is missing."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in a distributed run; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group (a plain single-process run)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def comm_device(self) -> torch.device:
        """Where tensors must be for collectives: NCCL talks GPU to GPU, gloo works on CPU tensors."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


SINGLE_PROCESS = DistContext()


def rank_device_spec(spec: str, local_rank: int) -> str:
    """The device string one rank uses: "cuda" means this rank's own GPU (cuda:LOCAL_RANK) and
    "cuda,cuda" this rank's own pair (cuda:2L, cuda:2L+1); explicit devices and "cpu" are kept."""
    parts = [p.strip() for p in spec.split(",")]
    if parts == ["cuda"]:
        return f"cuda:{local_rank}"
    if parts == ["cuda", "cuda"]:
        return f"cuda:{2 * local_rank},cuda:{2 * local_rank + 1}"
    return spec


def init_from_env(device_spec: str) -> DistContext:
    """Join the process group torchrun set up (environment variables RANK, WORLD_SIZE, ...).

    NCCL when the devices are GPUs, gloo on CPU. Raises DistributedError outside torchrun.
    """
    missing = [name for name in _TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise DistributedError(
            f"--distributed needs the process group settings torchrun provides ({', '.join(missing)} not set); "
            "launch with: torchrun --nproc_per_node N -m alexgui train --distributed ..."
        )
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    on_gpu = "cuda" in device_spec
    if on_gpu:
        if not torch.cuda.is_available():
            raise DistributedError(f"device {device_spec!r} asked for, but this machine has no usable CUDA GPU")
        first = rank_device_spec(device_spec, local).split(",")[0]
        torch.cuda.set_device(torch.device(first))
    backend = "nccl" if on_gpu else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend)


def shutdown(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        if ctx.backend == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


# -- the order each rank trains on --------------------------------------------------------------


def usable_images(n: int, world_size: int) -> int:
    """Images of an epoch that are trained on: a multiple of the process count."""
    return n - n % world_size


def steps_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    return math.ceil(usable_images(n, world_size) / (batch_size * world_size))


def rank_order(order: np.ndarray, start: int, batch_size: int, rank: int, world_size: int) -> np.ndarray:
    """This rank's images of an epoch from position `start` of the global order on, in the order it
    trains on them: consecutive chunks of `batch_size` are its batches (the last may be shorter).

    `start` must be the start of a global batch (a multiple of batch_size * world_size). With one
    process this is order[start:].
    """
    rest = np.asarray(order)[start : usable_images(len(order), world_size)]
    per_step = batch_size * world_size
    slices = []
    for s in range(0, len(rest), per_step):
        chunk = rest[s : s + per_step]
        share = len(chunk) // world_size
        slices.append(chunk[rank * share : (rank + 1) * share])
    return np.concatenate(slices) if slices else rest[:0]


def shard_image_set(images: ImageSet, rank: int, world_size: int) -> ImageSet:
    """A contiguous 1/world_size of `images` (for validation split across the ranks)."""
    chosen = np.array_split(np.arange(len(images)), world_size)[rank]
    return ImageSet(
        [images.paths[i] for i in chosen], images.labels[chosen], images.size, images.cache, images.rows[chosen]
    )


# -- collectives --------------------------------------------------------------------------------


def all_reduce_sums(ctx: DistContext, values: Sequence[float]) -> list[float]:
    """Element-wise sums over all ranks (float64); the values themselves in a single process."""
    if not ctx.active:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.comm_device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def reduce_means(ctx: DistContext, means: Sequence[float], n: int) -> list[float]:
    """Means over all ranks' items, from each rank's means over its own n items (NaN means: none)."""
    sums = [0.0 if n == 0 or not math.isfinite(m) else m * n for m in means]
    *totals, count = all_reduce_sums(ctx, [*sums, float(n)])
    return [t / count if count else math.nan for t in totals]


def wrap_model(model: nn.Module, ctx: DistContext, devices: Sequence[torch.device]) -> nn.Module:
    """The module the training step calls: DistributedDataParallel around `model` when distributed
    (device_ids only for a model on one GPU; a two-device model needs None), else `model` itself."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [devices[0].index] if len(devices) == 1 and devices[0].type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


# -- the run directory on ranks other than 0 ----------------------------------------------------


class FollowerRunDir(RunDir):
    """The run directory as a rank other than 0 sees it: readable (the checkpoint to resume from),
    never written, so the app following the run sees rank 0's log only."""

    def append(self, event: Event) -> None:
        pass

    def write_preflight(self, report: dict[str, Any]) -> None:
        pass

    def sync(self) -> None:
        pass

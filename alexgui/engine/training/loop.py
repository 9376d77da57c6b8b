"""The training loop as a generator of events, and evaluation (centre crop or 10 crops).

Nothing here knows a window exists: the CLI prints the events, the desktop app plots them, and every
event that matters later is appended to the run directory's metrics.jsonl before it is yielded.

Reproducibility: the order of an epoch comes from (seed, epoch) and the augmentation and dropout
draws from (seed, step), so a run resumed at any step repeats exactly what an uninterrupted run
would have done (bit for bit on CPU).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from alexgui import __version__
from alexgui.config import RunConfig
from alexgui.engine.data.dataset import (
    ImageSet,
    PreparedData,
    prepare_dataset,
)
from alexgui.engine.data.stats import DataStats, compute_stats
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.devices import describe_devices, parse_devices
from alexgui.engine.events import (
    CheckpointSaved,
    EpochDone,
    Event,
    Failed,
    Finished,
    LrDropped,
    Paused,
    PreflightReport,
    Progress,
    Resumed,
    RunStarted,
    StepDone,
    Stopped,
)
from alexgui.engine.model.base import CONV_LAYERS, AlexNetBase
from alexgui.engine.model.networks import build_model
from alexgui.engine.model.placement import place_model, take_tower_stats
from alexgui.engine.store.atomic import atomic_write_text
from alexgui.engine.store.checkpoint import (
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
    split_prefix,
)
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.distributed import (
    SINGLE_PROCESS,
    DistContext,
    all_reduce_sums,
    barrier,
    rank_device_spec,
    rank_order,
    reduce_means,
    shard_image_set,
    wrap_model,
)
from alexgui.engine.training.distributed import (
    steps_per_epoch as epoch_steps,
)
from alexgui.engine.training.memory import reusing_freed_memory
from alexgui.engine.training.schedule import PlateauSchedule
from alexgui.errors import AlexguiError, Cancelled
from alexgui.paths import cache_dir

CHECKPOINT_FORMAT = "alexgui-checkpoint/1"
T = TypeVar("T")


class TrainingError(AlexguiError, RuntimeError):
    """A problem that ends the run; the message is meant for the user."""


@dataclass
class TrainControl:
    """Requests from another thread (the GUI, a signal handler), honoured between steps."""

    stop: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)
    save_now: threading.Event = field(default_factory=threading.Event)
    # Called from the training thread with CPU copies of the conv kernels ({layer: (out,in,kh,kw)})
    # at most every `snapshot_seconds`, for live filter views. Must be cheap and thread-safe.
    on_kernels: Callable[[dict[str, torch.Tensor]], None] | None = None
    snapshot_seconds: float = 10.0


def accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1, 5)) -> list[float]:
    """Fraction of rows whose target is among the k highest scores, for each k (k capped at the class count)."""
    return _hit_rates(output, target, topk).tolist()


def _hit_rates(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1, 5)) -> torch.Tensor:
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
            with _autocast(device, bf16):
                if ten_crop:
                    crops = preprocess.ten_crop_batch(u8)  # (10, B, 3, H, W)
                    n_crops, b = crops.shape[:2]
                    logits = model(_memory_format(crops.flatten(0, 1), channels_last)).float()
                    probs = logits.softmax(dim=1).view(n_crops, b, -1).mean(dim=0)
                else:
                    logits = model(_memory_format(preprocess.center_batch(u8), channels_last)).float()
                    probs = logits.softmax(dim=1)
            batch_loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum")
            batch_loss, top1, top5 = torch.cat([batch_loss.reshape(1), _hit_rates(probs, labels)]).tolist()
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


def train(
    cfg: RunConfig,
    run: RunDir,
    control: TrainControl | None = None,
    resume: bool = False,
    dist: DistContext | None = None,
) -> Iterator[Event]:
    """Train per `cfg`, writing to `run`; yields events until Finished, Stopped or Failed.

    `dist` places this process in a data-parallel run (see engine/distributed.py); None: one process.
    """
    with reusing_freed_memory():  # steps reuse the last step's memory (see engine/memory.py)
        # The run's model, optimiser and gradients are freed when _train_events ends, before the
        # memory it kept is handed back.
        yield from _train_events(cfg, run, control or TrainControl(), resume, dist)


def _train_events(
    cfg: RunConfig, run: RunDir, control: TrainControl, resume: bool, dist: DistContext | None
) -> Iterator[Event]:
    trainer = _Trainer(cfg, run, control, dist or SINGLE_PROCESS)
    try:
        yield from trainer.run(resume)
    except Cancelled:
        yield trainer.emit(Stopped(trainer.step, trainer.epoch, checkpoint=trainer.last_saved))
    except AlexguiError as e:  # their messages are written for the user
        yield trainer.emit(Failed(trainer.step, trainer.epoch, message=str(e), checkpoint=trainer.last_saved))
    except torch.cuda.OutOfMemoryError:
        message = (
            f"{cfg.train.device} ran out of memory at batch size {cfg.train.batch_size}. "
            "Try a smaller batch size, bf16, or another device."
        )
        yield trainer.emit(Failed(trainer.step, trainer.epoch, message=message, checkpoint=trainer.last_saved))
    except Exception as e:  # noqa: BLE001 - the run must end with an event the user can read
        message = f"training stopped by an unexpected error: {type(e).__name__}: {e}"
        yield trainer.emit(Failed(trainer.step, trainer.epoch, message=message, checkpoint=trainer.last_saved))


class _Trainer:
    def __init__(self, cfg: RunConfig, run: RunDir, control: TrainControl, dist: DistContext = SINGLE_PROCESS) -> None:
        self.cfg = cfg
        self.dist = dist
        self.run_dir = run
        self.control = control
        self.step = 0
        self.epoch = 0
        self.batch = 0  # next batch within the epoch
        self.last_saved: str | None = None
        self.epoch_sums = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "n": 0}

    def emit(self, event: Event) -> Event:
        if not isinstance(event, Progress):
            self.run_dir.append(event)
        return event

    # -- set-up -----------------------------------------------------------------------------

    def run(self, resume: bool) -> Generator[Event, None, None]:
        cfg = self.cfg
        self.devices = parse_devices(rank_device_spec(cfg.train.device, self.dist.local_rank))
        device = self.devices[0]  # inputs, fc8 and the loss live on the first device
        self.device = device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN time its algorithms once
        checkpoint = self._resume_checkpoint() if resume else None
        if checkpoint is not None:
            # The weights fix the network; schedule and stopping settings (epochs, max steps, device,
            # workers) may change on resume, which is how a user extends a finished run.
            saved = RunConfig.from_toml(checkpoint.meta["config"], f"{checkpoint.path} (config)")
            cfg.model = saved.model
            cfg.data.crop = saved.data.crop
            self._restore_counters(checkpoint.meta)
        if self.dist.is_main:
            atomic_write_text(self.run_dir.config_path, cfg.to_toml())

        data: PreparedData = yield from self._prepare_data()
        self._write_preflight(data)
        yield self.emit(
            PreflightReport(
                self.step,
                self.epoch,
                images_ok=len(data.train) + len(data.val),
                skipped=[{"path": s.path, "reason": s.reason} for s in data.skipped],
            )
        )

        if checkpoint is not None:
            if list(checkpoint.meta["class_names"]) != list(data.class_names):
                raise TrainingError(
                    f"{checkpoint.path}: the checkpoint's classes {checkpoint.meta['class_names']} "
                    f"differ from the dataset's {data.class_names}; resume needs the same classes"
                )
            preprocess = Preprocess.from_description(checkpoint.meta["preprocessing"], checkpoint.tensors)
        else:
            stats: DataStats = yield from _reporting(
                compute_stats, self.step, self.epoch, data.train, stage="mean image and PCA", stop=self.control.stop
            )
            if cfg.model.arch == "paper":
                preprocess = Preprocess.from_stats(stats, crop=cfg.data.crop)
            else:  # torchvision's normalisation, with the paper's PCA noise from this dataset
                preprocess = Preprocess.imagenet_mean_std(crop=cfg.data.crop, stats=stats)
        self.preprocess = preprocess.to(device)
        self.class_names = list(data.class_names)

        cfg.model.num_classes = len(data.class_names)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model)
        if checkpoint is not None:
            model.load_state_dict(split_prefix(checkpoint.tensors, "model."))
        model = self._place(model)
        self.model = model
        # What a training step calls: DistributedDataParallel around the model when distributed.
        self.step_model = wrap_model(model, self.dist, self.devices)
        schedule = (
            PlateauSchedule.from_state(checkpoint.meta["schedule"])
            if checkpoint is not None
            else PlateauSchedule(
                lr=cfg.train.lr,
                factor=cfg.train.lr_factor,
                patience=cfg.train.lr_patience,
                max_drops=cfg.train.lr_max_drops,
            )
        )
        self.schedule = schedule
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=schedule.lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay
        )
        if checkpoint is not None:
            self._restore_momentum(checkpoint)

        steps_per_epoch = epoch_steps(len(data.train), cfg.train.batch_size, self.dist.world_size)
        if steps_per_epoch == 0:
            raise TrainingError(
                f"{len(data.train)} training image(s) cannot be shared by {self.dist.world_size} processes"
            )
        yield self.emit(
            RunStarted(
                self.step,
                self.epoch,
                device=self._device_label(),
                arch=cfg.model.arch,
                num_classes=len(data.class_names),
                class_names=list(data.class_names),
                train_images=len(data.train),
                val_images=len(data.val),
                steps_per_epoch=steps_per_epoch,
                epochs=cfg.train.epochs,
                resumed=checkpoint is not None,
            )
        )
        yield from self._loop(data, steps_per_epoch)

    def _resume_checkpoint(self) -> Checkpoint | None:
        path = self.run_dir.last_checkpoint
        if not path.exists():
            return None  # nothing saved yet: start from the beginning in the same run directory
        checkpoint = load_checkpoint(path)
        if checkpoint.meta.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"{path}: not an alexgui training checkpoint (format {checkpoint.meta.get('format')!r})")
        self.last_saved = str(path)
        return checkpoint

    def _restore_counters(self, meta: dict[str, Any]) -> None:
        saved_world = int(meta.get("world_size", 1))
        if saved_world != self.dist.world_size and int(meta["batch"]) != 0:
            raise TrainingError(
                f"{self.run_dir.last_checkpoint}: saved mid-epoch by {saved_world} process(es); resume it with "
                f"{saved_world} (this run has {self.dist.world_size}), or from a checkpoint saved at an epoch end"
            )
        self.step = int(meta["step"])
        self.epoch = int(meta["epoch"])
        self.batch = int(meta["batch"])
        self.epoch_sums = dict(meta["epoch_sums"])

    def _restore_momentum(self, checkpoint: Checkpoint) -> None:
        buffers = split_prefix(checkpoint.tensors, "optim.")
        for i, p in enumerate(self.model.parameters()):
            buf = buffers.get(f"{i}.momentum_buffer")
            if buf is not None:
                self.optimizer.state[p]["momentum_buffer"] = buf.to(p.device).clone()

    def _write_preflight(self, data: PreparedData) -> None:
        self.run_dir.write_preflight({
            "data": self.cfg.data.data,
            "class_names": list(data.class_names),
            "train_images": len(data.train),
            "val_images": len(data.val),
            "skipped": [{"path": s.path, "reason": s.reason} for s in data.skipped],
        })

    # -- placement and data parallelism -----------------------------------------------------

    def _prepare_data(self) -> Generator[Event, None, PreparedData]:
        if not self.dist.active:
            return (yield from self._prepare_now())
        # Who fills a decoded-image cache (and makes the demo set) must not race another process doing
        # the same: rank 0 first, then the first process of each other machine, then everyone else.
        my_turn = 0 if self.dist.is_main else 1 if self.dist.local_rank == 0 else 2
        data: PreparedData | None = None
        for turn in range(3):
            if turn == my_turn:
                data = yield from self._prepare_now()
            barrier(self.dist)
        assert data is not None
        return data

    def _prepare_now(self) -> Generator[Event, None, PreparedData]:
        return (
            yield from _reporting(prepare_dataset, self.step, self.epoch, self.cfg.data, cache_dir(), stop=self.control.stop)
        )

    def _place(self, model: AlexNetBase) -> AlexNetBase:
        """Onto the device(s), in the memory format and compiled as the config asks."""
        model = place_model(model, self.devices)
        if self.cfg.train.channels_last and self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        if self.cfg.train.compile:
            model.compile()  # in place: parameter names (and so checkpoints) stay the same
        return model

    def _device_label(self) -> str:
        label = describe_devices(self.devices)
        if self.dist.active:
            label += f" (rank 0 of {self.dist.world_size} processes)"
        return label

    def _global_metrics(self, loss: float, top1: float, top5: float, n: int) -> tuple[float, float, float, int]:
        """This step's loss and accuracies over the global batch (all ranks), and its size."""
        loss_sum, top1_sum, top5_sum, total = all_reduce_sums(self.dist, [loss * n, top1 * n, top5 * n, n])
        return loss_sum / total, top1_sum / total, top5_sum / total, int(total)

    def _stop_requested(self) -> bool:
        stop = self.control.stop.is_set()
        if self.dist.active:  # all ranks stop at the same step, or the others wait forever in a collective
            stop = all_reduce_sums(self.dist, [float(stop)])[0] > 0
        return stop

    def _validate(self, images: ImageSet) -> tuple[float, float, float]:
        """Validation loss and errors; split across the ranks and reduced when distributed."""
        cfg = self.cfg
        mine = shard_image_set(images, self.dist.rank, self.dist.world_size) if self.dist.active else images
        result = evaluate(
            self.model,
            self.preprocess,
            mine,
            cfg.train.batch_size,
            self.device,
            ten_crop=cfg.data.ten_crop_eval,
            channels_last=cfg.train.channels_last and self.device.type == "cuda",
            bf16=cfg.train.bf16,
        )
        if not self.dist.active:
            return result
        loss, top1_err, top5_err = reduce_means(self.dist, result, len(mine))
        return loss, top1_err, top5_err

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self, data: PreparedData, steps_per_epoch: int) -> Generator[Event, None, None]:
        cfg, control, device = self.cfg, self.control, self.device
        model, schedule = self.model, self.schedule
        max_steps = cfg.train.max_steps
        last_checkpoint_time = time.monotonic()
        pin = device.type == "cuda"
        self._send_kernels()
        last_snapshot_time = time.monotonic()

        while self.epoch < cfg.train.epochs:
            epoch_start = time.monotonic()
            order = np.random.default_rng([cfg.train.seed, self.epoch]).permutation(len(data.train))
            start = self.batch * cfg.train.batch_size * self.dist.world_size  # global batches are full
            mine = rank_order(order, start, cfg.train.batch_size, self.dist.rank, self.dist.world_size)
            batches = data.train.batches(mine, cfg.train.batch_size, cfg.data.workers, pin_memory=pin)
            if device.type == "cuda":
                batches = _prefetched(batches)
            model.train()
            step_start = time.monotonic()
            for u8, labels in batches:
                if control.pause.is_set() and not control.stop.is_set():
                    yield self.emit(Paused(self.step, self.epoch))
                    while control.pause.is_set() and not control.stop.is_set():
                        time.sleep(0.05)
                    yield self.emit(Resumed(self.step, self.epoch))
                    step_start = time.monotonic()
                if self._stop_requested():
                    path = self._save("last")
                    yield self.emit(CheckpointSaved(self.step, self.epoch, path=path, kind="last"))
                    yield self.emit(Stopped(self.step, self.epoch, checkpoint=path))
                    return
                if control.save_now.is_set():
                    control.save_now.clear()
                    path = self._save("last")
                    yield self.emit(CheckpointSaved(self.step, self.epoch, path=path, kind="manual"))

                loss, top1, top5 = self._train_step(u8, labels)
                tower_ms, cross_bytes = take_tower_stats(self.model)
                self.step += 1
                self.batch += 1
                n = labels.shape[0]
                if self.dist.active:  # the global batch's figures, the same on every rank
                    loss, top1, top5, n = self._global_metrics(loss, top1, top5, n)
                self._accumulate(loss, top1, top5, n)
                now = time.monotonic()
                images_per_s = n / max(now - step_start, 1e-9)
                step_start = now
                if self.step % cfg.train.log_every == 0 or self.batch == steps_per_epoch:
                    if not math.isfinite(loss):
                        raise TrainingError(
                            f"the loss became {loss} at step {self.step} (epoch {self.epoch + 1}); "
                            "the weights of this step were not saved. Try a lower learning rate."
                        )
                    yield self.emit(
                        StepDone(
                            self.step,
                            self.epoch,
                            batch=self.batch,
                            batches=steps_per_epoch,
                            loss=loss,
                            top1_err=1.0 - top1,
                            top5_err=1.0 - top5,
                            lr=schedule.lr,
                            images_per_s=images_per_s,
                            tower_ms=tower_ms,
                            cross_bytes=cross_bytes,
                        )
                    )
                if control.on_kernels is not None and now - last_snapshot_time >= control.snapshot_seconds:
                    self._send_kernels()
                    last_snapshot_time = now
                if max_steps and self.step >= max_steps:
                    path = self._save("last")
                    yield self.emit(CheckpointSaved(self.step, self.epoch, path=path, kind="last"))
                    yield self.emit(Finished(self.step, self.epoch, reason="max_steps"))
                    return
                minutes = cfg.train.checkpoint_minutes
                if minutes > 0 and now - last_checkpoint_time >= minutes * 60:
                    path = self._save("last")
                    last_checkpoint_time = time.monotonic()
                    yield self.emit(CheckpointSaved(self.step, self.epoch, path=path, kind="last"))
                    step_start = time.monotonic()

            yield from self._end_epoch(data, time.monotonic() - epoch_start)
            last_checkpoint_time = time.monotonic()

        yield self.emit(Finished(self.step, self.epoch, reason="epochs"))

    def _train_step(self, u8: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
        cfg, device = self.cfg, self.device
        # One seed per global step drives the crops, flips, colour noise and dropout of this step.
        step_seed = (cfg.train.seed * 1_000_003 + self.step) * self.dist.world_size + self.dist.rank  # rank 0 of 1: as before
        generator = torch.Generator().manual_seed(step_seed)
        torch.manual_seed(step_seed)
        u8 = u8.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        x = self.preprocess.train_batch(
            u8,
            generator,
            random_crop=cfg.data.random_crop,
            flip=cfg.data.flip,
            pca_noise=cfg.data.pca_noise if cfg.model.arch == "paper" else 0.0,
        )
        x = _memory_format(x, cfg.train.channels_last and device.type == "cuda")
        with _autocast(device, cfg.train.bf16):
            logits = self.step_model(x)
            loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():  # one device-to-host copy per step, not one per number
            values = torch.cat([loss.detach().reshape(1), _hit_rates(logits.detach().float(), labels)])
        loss_value, top1, top5 = values.tolist()
        return loss_value, top1, top5

    def _accumulate(self, loss: float, top1: float, top5: float, n: int) -> None:
        s = self.epoch_sums
        s["loss"] += loss * n
        s["top1"] += top1 * n
        s["top5"] += top5 * n
        s["n"] += n

    def _end_epoch(self, data: PreparedData, seconds: float) -> Generator[Event, None, None]:
        cfg = self.cfg
        s = self.epoch_sums
        n = max(s["n"], 1)
        val_loss, val_top1, val_top5 = self._validate(data.val)
        lr = self.schedule.lr
        improved = self.schedule.improves(val_top1)
        yield self.emit(
            EpochDone(
                self.step,
                self.epoch,
                train_loss=s["loss"] / n,
                train_top1_err=1.0 - s["top1"] / n,
                train_top5_err=1.0 - s["top5"] / n,
                val_loss=val_loss,
                val_top1_err=val_top1,
                val_top5_err=val_top5,
                lr=lr,
                seconds=seconds,
                ten_crop=cfg.data.ten_crop_eval,
            )
        )
        new_lr = self.schedule.update(val_top1)
        if new_lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = new_lr
            yield self.emit(
                LrDropped(
                    self.step,
                    self.epoch,
                    old_lr=lr,
                    new_lr=new_lr,
                    reason=f"val top-1 error has not improved for {self.schedule.patience} epochs "
                    f"(drop {self.schedule.drops} of {self.schedule.max_drops})",
                )
            )
        self.epoch += 1
        self.batch = 0
        self.epoch_sums = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "n": 0}
        path = self._save("last")
        yield self.emit(CheckpointSaved(self.step, self.epoch, path=path, kind="last"))
        if improved:
            best = self._save("best")
            yield self.emit(CheckpointSaved(self.step, self.epoch, path=best, kind="best"))

    # -- checkpoints ------------------------------------------------------------------------

    def _save(self, kind: str) -> str:
        path = self.run_dir.best_checkpoint if kind == "best" else self.run_dir.last_checkpoint
        if self.dist.is_main:  # every rank holds the same weights; one writes them
            save_checkpoint(path, self._checkpoint_tensors(), self._checkpoint_meta())
        if kind != "best":
            self.last_saved = str(path)
        return str(path)

    def _checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v.detach() for k, v in self.model.state_dict().items()}
        for i, p in enumerate(self.model.parameters()):
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"optim.{i}.momentum_buffer"] = buf
        tensors.update(self.preprocess.stat_tensors())
        return tensors

    def _checkpoint_meta(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "format": CHECKPOINT_FORMAT,
            "alexgui_version": __version__,
            "config": cfg.to_toml(),
            "arch": cfg.model.arch,
            "class_names": self.class_names,
            "preprocessing": self.preprocess.describe(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "epoch_sums": self.epoch_sums,
            "world_size": self.dist.world_size,
            "schedule": self.schedule.state(),
            "rng": {"seed": cfg.train.seed, "step": self.step, "scheme": "order from (seed, epoch); draws from (seed, step)"},
            "saved_at": time.time(),
        }

    def _send_kernels(self) -> None:
        if self.control.on_kernels is None:
            return
        with torch.no_grad():
            kernels = {name: self.model.kernels(name).detach().float().cpu().clone() for name in CONV_LAYERS}
        self.control.on_kernels(kernels)


def _reporting(
    fn: Callable[..., T], step: int, epoch: int, *args: Any, stage: str | None = None, **kwargs: Any
) -> Generator[Event, None, T]:
    """Run fn(*args, progress=..., **kwargs) in a thread, yielding its progress as Progress events.

    fn reports progress(stage, done, total), or progress(done, total) when `stage` names it here.
    """
    updates: queue.Queue[tuple[str, int, int] | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(*report: Any) -> None:
        updates.put((stage, *report) if stage is not None else report)

    def target() -> None:
        try:
            outcome["value"] = fn(*args, progress=progress, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = e
        finally:
            updates.put(None)

    worker = threading.Thread(target=target, name=f"alexgui-{getattr(fn, '__name__', 'work')}", daemon=True)
    worker.start()
    while (item := updates.get()) is not None:
        name, done, total = item
        yield Progress(step, epoch, stage=name, done=done, total=total)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class _ProducerFailed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _prefetched(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """`items`, produced up to `depth` ahead in a background thread, so that reading the next batch out
    of the cache into pinned memory overlaps the GPU's work on this one (the step waits on the GPU)."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    finished = threading.Event()

    def put(item: Any) -> bool:
        while not finished.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer's thread
            put(_ProducerFailed(e))
            return
        put(_END)

    worker = threading.Thread(target=produce, name="alexgui-prefetch", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, _ProducerFailed):
                raise item.error
            yield item
    finally:
        finished.set()
        worker.join()


def _autocast(device: torch.device, bf16: bool) -> Any:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def _memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def checkpoint_path_for(run: str | Path) -> Path:
    """The checkpoint a run directory offers for inference: best if present, else last."""
    run_dir = RunDir.open(run)
    return run_dir.best_checkpoint if run_dir.best_checkpoint.exists() else run_dir.last_checkpoint

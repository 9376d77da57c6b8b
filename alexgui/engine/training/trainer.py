"""One training run: its set-up (device, resuming, the source to start from, data, preprocessing, the
model), the loop over epochs and steps, validation at each epoch's end, checkpoints and kernel
snapshots. Every event that matters later is appended to the run directory's metrics.jsonl before it
is yielded. loop.train() wraps it: it claims the run directory and turns every error into a final event.

Reproducibility: the order of an epoch comes from (seed, epoch) and the augmentation and dropout
draws from (seed, step), so a run resumed at any step repeats exactly what an uninterrupted run
would have done (bit for bit on CPU).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from alexgui.config import RunConfig
from alexgui.engine.data.changes import data_changes
from alexgui.engine.data.dataset import PreparedData
from alexgui.engine.devices import describe_devices, parse_devices
from alexgui.engine.events import (
    CheckpointSaved,
    EpochDone,
    Event,
    Finished,
    KernelSnapshot,
    LrDropped,
    Paused,
    PreflightReport,
    Progress,
    Resumed,
    RunStarted,
    StepDone,
    Stopped,
)
from alexgui.engine.model.placement import take_tower_stats
from alexgui.engine.store.atomic import atomic_write_text
from alexgui.engine.store.checkpoint import save_checkpoint
from alexgui.engine.store.filter_history import forget_after
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.background import prefetched, reporting
from alexgui.engine.training.checkpoints import (
    Position,
    checkpoint_meta,
    checkpoint_tensors,
    load_resume_checkpoint,
    restore_position,
    resumed_config,
)
from alexgui.engine.training.control import TrainControl, TrainingError
from alexgui.engine.training.distributed import (
    SINGLE_PROCESS,
    DistContext,
    all_reduce_sums,
    rank_device_spec,
    rank_order,
)
from alexgui.engine.training.distributed import steps_per_epoch as epoch_steps
from alexgui.engine.training.evaluation import validate
from alexgui.engine.training.head_features import HeadFeatures, head_features, head_step
from alexgui.engine.training.init_source import (
    adopt_source,
    describe_lineage,
    lineage,
    resolve_init_source,
    trainable_parameters,
)
from alexgui.engine.training.kernel_history import snapshot_kernels
from alexgui.engine.training.precision import precision_note
from alexgui.engine.training.setup import preflight, prepare_data, trainable, training_preprocess
from alexgui.engine.training.step import network_step
from alexgui.paths import cache_dir


class Trainer:
    """One run: its settings (a copy: resuming takes the network from the checkpoint), its place in
    the schedule, and the model, optimiser and data while it trains."""

    def __init__(self, cfg: RunConfig, run: RunDir, control: TrainControl, dist: DistContext = SINGLE_PROCESS) -> None:
        self.cfg = copy.deepcopy(cfg)
        self.dist = dist
        self.run_dir = run
        self.control = control
        self.at = Position()
        self.last_saved: str | None = None  # a checkpoint this run saved, or resumed from and restored
        self.resumed_from: str | None = None  # the checkpoint loaded to resume, before it is known good
        self._snapshot_step = -1  # the step of the last kernel snapshot

    @property
    def step(self) -> int:
        return self.at.step

    @property
    def epoch(self) -> int:
        return self.at.epoch

    def emit(self, event: Event) -> Event:
        if not isinstance(event, Progress):
            self.run_dir.append(event)
        return event

    # -- set-up -----------------------------------------------------------------------------

    def run(self, resume: bool) -> Generator[Event, None, None]:
        self.devices = parse_devices(rank_device_spec(self.cfg.train.device, self.dist.local_rank))
        device = self.devices[0]  # inputs, fc8 and the loss live on the first device
        self.device = device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN time its algorithms once
        checkpoint = load_resume_checkpoint(self.run_dir.last_checkpoint) if resume else None
        if checkpoint is not None:
            self.resumed_from = str(checkpoint.path)
            self.cfg = resumed_config(self.cfg, checkpoint)
            self.at = restore_position(checkpoint, self.dist.world_size)
            if self.cfg.train.max_steps and self.step >= self.cfg.train.max_steps:
                # Nothing to do, and nothing written: not even one more step (said, not logged).
                yield Finished(self.step, self.epoch, reason="max_steps")
                return
        cfg = self.cfg
        source = None
        self.lineage: dict[str, Any] | None = None
        if checkpoint is not None:
            saved_lineage = checkpoint.meta.get("lineage")
            self.lineage = saved_lineage if isinstance(saved_lineage, dict) else None
        elif cfg.train.init:  # the source is checked before the data is read (a bad one fails at once)
            source = resolve_init_source(cfg.train.init, stop=self.control.stop)
            adopt_source(cfg, source)

        data: PreparedData = yield from prepare_data(cfg, self.dist, self.step, self.epoch, self.control.stop)
        self.run_dir.write_preflight(preflight(cfg, data))
        yield self.emit(
            PreflightReport(
                self.step,
                self.epoch,
                images_ok=len(data.train) + len(data.val),
                skipped=[{"path": s.path, "reason": s.reason} for s in data.skipped],
            )
        )
        preprocess = yield from training_preprocess(cfg, data, checkpoint, self.step, self.epoch, self.control.stop, source)
        self.preprocess = preprocess.to(device)
        if self.dist.is_main:  # only once resuming is known to fit the data (a refusal leaves the file alone)
            atomic_write_text(self.run_dir.config_path, cfg.to_toml())
            if checkpoint is not None:  # the steps after the checkpoint are redone: their filter frames go
                forget_after(self.run_dir.path, self.step)
        self.class_names = list(data.class_names)

        cfg.model.num_classes = len(data.class_names)
        # step_model is what a training step calls: DistributedDataParallel around the model when distributed.
        self.model, self.step_model, self.schedule, self.optimizer, head_kept = trainable(
            cfg, checkpoint, self.devices, self.dist, source, self.class_names
        )
        if source is not None:
            self.lineage = lineage(source, cfg.train.finetune, head_kept)
        # A head fine-tune in one process on one device trains fc8 on fc7 features computed once
        # (head_features.py); under torchrun or split over two devices it takes the full network's step.
        self.features: HeadFeatures | None = None
        if cfg.train.init and cfg.train.finetune == "head" and not self.dist.active and len(self.devices) == 1:
            fingerprint = str((self.lineage or {}).get("fingerprint", cfg.train.init))
            self.features = yield from reporting(
                head_features,
                self.step,
                self.epoch,
                self.model,
                self.preprocess,
                data.train,
                data.val,
                fingerprint,
                cfg.train.seed,
                cfg.data.ten_crop_eval,
                device,
                cache_dir(),
                stop=self.control.stop,
            )
        if checkpoint is not None:
            self.last_saved = str(checkpoint.path)  # only now known good: a failure above names no checkpoint

        steps_per_epoch = epoch_steps(len(data.train), cfg.train.batch_size, self.dist.world_size)
        if steps_per_epoch == 0:
            raise TrainingError(f"{len(data.train)} training image(s) cannot be shared by {self.dist.world_size} processes")
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
                start=describe_lineage(self.lineage) if self.lineage else "",
                trainable_params=trainable_parameters(self.model)[0] if cfg.train.init else 0,
            )
        )
        yield from self._loop(data, steps_per_epoch)

    # -- placement and data parallelism -----------------------------------------------------

    def _device_label(self) -> str:
        label = describe_devices(self.devices)
        if note := precision_note(self.device, self.cfg.train.bf16):  # bf16, or why --bf16 is not used here
            label += f" ({note})"
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

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self, data: PreparedData, steps_per_epoch: int) -> Generator[Event, None, None]:
        cfg, control, device = self.cfg, self.control, self.device
        model, schedule = self.model, self.schedule
        max_steps = cfg.train.max_steps
        last_checkpoint_time = time.monotonic()
        pin = device.type == "cuda"
        yield self._snapshot_kernels()
        last_snapshot_time = time.monotonic()

        while self.epoch < cfg.train.epochs:
            epoch_start = time.monotonic()
            order = np.random.default_rng([cfg.train.seed, self.epoch]).permutation(len(data.train))
            start = self.at.batch * cfg.train.batch_size * self.dist.world_size  # global batches are full
            mine = rank_order(order, start, cfg.train.batch_size, self.dist.rank, self.dist.world_size)
            if self.features is not None:
                batches = self.features.batches(mine, cfg.train.batch_size, cfg.train.seed, self.epoch)
            else:
                batches = data.train.batches(mine, cfg.train.batch_size, cfg.data.workers, pin_memory=pin)
            if device.type == "cuda":
                batches = prefetched(batches)
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
                self.at.step += 1
                self.at.batch += 1
                n = labels.shape[0]
                if self.dist.active:  # the global batch's figures, the same on every rank
                    loss, top1, top5, n = self._global_metrics(loss, top1, top5, n)
                self.at.accumulate(loss, top1, top5, n)
                now = time.monotonic()
                images_per_s = n / max(now - step_start, 1e-9)
                step_start = now
                if self.step % cfg.train.log_every == 0 or self.at.batch == steps_per_epoch:
                    if not math.isfinite(loss):
                        raise TrainingError(
                            f"the loss became {loss} at step {self.step} (epoch {self.epoch + 1}); "
                            "the weights of this step were not saved. Try a lower learning rate."
                        )
                    yield self.emit(
                        StepDone(
                            self.step,
                            self.epoch,
                            batch=self.at.batch,
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
                if now - last_snapshot_time >= control.snapshot_seconds:  # logged even with no one watching
                    yield self._snapshot_kernels()
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

            for changed in data_changes(data, self.step, self.epoch):  # files gone or changed since the pre-flight
                yield self.emit(changed)
            yield from self._end_epoch(data, time.monotonic() - epoch_start)
            last_checkpoint_time = time.monotonic()
            if self._snapshot_step != self.step:  # at least one frame per epoch for the filter history
                yield self._snapshot_kernels()
                last_snapshot_time = last_checkpoint_time

        yield self.emit(Finished(self.step, self.epoch, reason="epochs"))

    def _train_step(self, u8: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
        # One seed per global step drives the crops, flips, colour noise and dropout of this step
        # (rank 0 of 1: the seed a single process always used).
        step_seed = (self.cfg.train.seed * 1_000_003 + self.step) * self.dist.world_size + self.dist.rank
        u8 = u8.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.features is not None:  # u8 is a batch of cached fc7 features: fc8's step alone
            torch.manual_seed(step_seed)  # its dropout's draws
            return head_step(self.model, self.optimizer, u8, labels)
        return network_step(self.cfg, self.step_model, self.optimizer, self.preprocess, u8, labels, step_seed)

    def _end_epoch(self, data: PreparedData, seconds: float) -> Generator[Event, None, None]:
        cfg = self.cfg
        s = self.at.epoch_sums
        n = max(s["n"], 1)
        if self.features is not None:
            val_loss, val_top1, val_top5 = self.features.validate(self.model, self.device)
        else:
            val_loss, val_top1, val_top5 = validate(self.model, self.preprocess, data.val, self.cfg, self.device, self.dist)
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
        new_lr = self.schedule.update(val_top1, len(data.val))  # the count sizes its noise guard
        if new_lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = new_lr * group["lr_scale"]  # conv1's own multiple kept (setup.sgd)
            yield self.emit(
                LrDropped(
                    self.step,
                    self.epoch,
                    old_lr=lr,
                    new_lr=new_lr,
                    reason=self.schedule.drop_reason(),
                )
            )
        self.at.next_epoch()
        path = self._save("last")
        yield self.emit(CheckpointSaved(self.step, self.epoch, path=path, kind="last"))
        if improved:
            best = self._save("best")
            yield self.emit(CheckpointSaved(self.step, self.epoch, path=best, kind="best"))

    # -- checkpoints ------------------------------------------------------------------------

    def _save(self, kind: str) -> str:
        path = self.run_dir.best_checkpoint if kind == "best" else self.run_dir.last_checkpoint
        if self.dist.is_main:  # every rank holds the same weights; one writes them
            meta = checkpoint_meta(self.cfg, self.class_names, self.preprocess, self.at, self.dist.world_size, self.schedule)
            if self.lineage is not None:
                meta["lineage"] = self.lineage
            save_checkpoint(path, checkpoint_tensors(self.model, self.optimizer, self.preprocess), meta)
        if kind != "best":
            self.last_saved = str(path)
        return str(path)

    def _snapshot_kernels(self) -> KernelSnapshot:
        event = snapshot_kernels(self.model, self.control, self.run_dir, self.step, self.epoch, self.dist.is_main)
        self._snapshot_step = self.step
        self.emit(event)
        return event

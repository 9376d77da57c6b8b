"""Section: the real-data pipeline (the engine's own trainer) as a ratio to synthetic data (goal >= 0.8).

engine.train runs on the photos exactly as `alexgui train` would: decoded-image cache (uint8 memory
map, filled on first use), pinned batches prefetched by a thread, random crops, flips and PCA colour
noise on the device, its metrics and events every step. Against it: the same paper net (same classes,
precision, memory format and batch) in the plainest loop on a batch already on the device.

Side by side in one process: train() is a generator, so the suite takes k of its steps, then runs k
synthetic steps while the trainer waits, and so on (A B A B). The trainer's own per-step images/s
(step end to step end, data wait included, epoch-end validation and checkpoints excluded) are used;
the first step after each pause is dropped, since its clock ran while the synthetic loop did.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Iterator

import torch

from alexgui.config import RunConfig
from alexgui.engine.events import Event, Failed, Finished, RunStarted, StepDone, Stopped
from alexgui.engine.model.paper import PaperAlexNet
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.loop import train
from benchmarks.bench_train_gpu import make_step
from benchmarks.gpu_suite.context import CheckFailed, SectionContext
from benchmarks.gpu_suite.timing import seconds, steps_for

NAME = "realdata"
TITLE = "Real-data pipeline: engine trainer on the photos vs the same net on synthetic data"
WEIGHT = 0.08
GOAL = 0.8
COLUMNS = [
    ("precision", "precision", "text"), ("batch", "batch", "int"),
    ("engine_images_per_s", "engine, real photos img/s", "rate"),
    ("synthetic_images_per_s", "plain loop, synthetic img/s", "rate"),
    ("ratio", "ratio (goal >= 0.8)", "ratio"), ("setup_s", "set-up s (cache, stats)", "num"),
    ("timed", "timed", "text"),
]  # fmt: skip


def engine_config(ctx: SectionContext, batch: int) -> RunConfig:
    cfg = RunConfig()
    cfg.data.data = str(ctx.data)
    cfg.data.workers = 0  # the decoded cache needs no decoding workers
    cfg.data.crop, cfg.data.resize = ctx.sizes.crop, ctx.sizes.resize
    cfg.train.device = str(ctx.device)
    cfg.train.batch_size = batch
    cfg.train.bf16 = ctx.cuda
    cfg.train.channels_last = ctx.cuda
    cfg.train.epochs = 10_000  # stopped by the suite, not by the schedule
    cfg.train.checkpoint_minutes = 0  # epoch ends only
    return cfg


class Steps:
    """Pull StepDone events out of the trainer, k at a time; raise when the run fails."""

    def __init__(self, events: Iterator[Event]) -> None:
        self.events = events
        self.classes = 0
        self.finished = False

    def take(self, k: int) -> list[StepDone]:
        got: list[StepDone] = []
        while len(got) < k:
            try:
                event = next(self.events)
            except StopIteration:
                self.finished = True
                break
            if isinstance(event, RunStarted):
                self.classes = event.num_classes
            elif isinstance(event, StepDone):
                got.append(event)
            elif isinstance(event, Failed):
                raise CheckFailed(f"the engine's run failed: {event.message}")
            elif isinstance(event, (Finished, Stopped)):
                self.finished = True
                break
        return got

    def close(self) -> None:
        close = getattr(self.events, "close", None)  # train() is a generator
        if close is not None:
            close()


def run(ctx: SectionContext) -> None:
    sizes, device = ctx.sizes, ctx.device
    batch = sizes.real_batch
    precision = "bf16" if ctx.cuda else "fp32"
    cfg = engine_config(ctx, batch)
    folder = ctx.work / "realdata-run"
    shutil.rmtree(folder, ignore_errors=True)
    run_dir = RunDir.create(folder, cfg)
    steps = Steps(train(cfg, run_dir))
    try:
        start = time.monotonic()
        first = steps.take(1)  # data set-up, statistics, model build
        setup_s = time.monotonic() - start
        if not first:
            raise CheckFailed("the engine's run ended before its first step")
        steps.take(sizes.warmup)
        fmt = torch.channels_last if ctx.cuda else torch.contiguous_format
        torch.manual_seed(0)
        model = PaperAlexNet(num_classes=steps.classes).to(device).to(memory_format=fmt)
        step = make_step(model, device, ctx.cuda)
        x = torch.randn(batch, 3, sizes.crop, sizes.crop, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, steps.classes, (batch,), device=device)
        for _ in range(sizes.warmup):
            step(x, y)
        n = sizes.min_steps
        if sizes.min_steps < sizes.max_steps:  # the engine's steps take longer: room for 2.5 x the plain ones
            one = seconds(lambda: step(x, y), device)
            n = steps_for(one, min(sizes.segment_s, ctx.time_left() / (sizes.rounds * 2 * 2.5)), n, sizes.max_steps)
        engine_rates: list[float] = []
        synthetic_rates: list[float] = []
        for _ in range(sizes.rounds):
            ctx.check_time("the next A B round")
            taken = steps.take(n + 1)
            engine_rates += [s.images_per_s for s in taken[1:]]  # the first one's clock ran during the pause
            synthetic_rates.append(n * batch / seconds(lambda: [step(x, y) for _ in range(n)], device))
            if steps.finished:
                break
    finally:
        # Closed rather than stopped: a stop would save a 0.5 GB checkpoint nobody reads. Closing ends the
        # trainer's generator at its current step (GeneratorExit), which frees its model and prefetcher.
        steps.close()
        run_dir.close()
        shutil.rmtree(folder, ignore_errors=True)
    if not engine_rates:
        raise CheckFailed("no engine steps were timed")
    engine = statistics.median(engine_rates)
    synthetic = statistics.median(synthetic_rates)
    ctx.row(precision, batch, engine_images_per_s=engine, synthetic_images_per_s=synthetic,
            ratio=engine / synthetic, setup_s=setup_s, channels_last=ctx.cuda,
            timed=f"{len(synthetic_rates)} rounds x {n} steps each")  # fmt: skip
    ctx.record["figures"]["goal_ratio"] = GOAL
    ctx.ran(f"engine.train on {ctx.data.name} (crop {sizes.crop}, cache on, augmentation on the device) and a "
            f"plain loop on synthetic data, {len(synthetic_rates)} alternating rounds of {n} steps after "
            f"{sizes.warmup} warm-up steps each; medians")  # fmt: skip

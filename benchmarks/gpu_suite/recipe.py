"""Section: the paper's recipe from random weights on the photos, to the end of its schedule or of the
section's budget, whichever comes first; then the final weights' validation error with the centre crop
and with the paper's ten crops (softmax averaged), and the curves as a PNG.

The recipe is RunConfig's defaults (engine.train, as `alexgui train` runs it): SGD with momentum 0.9 and
weight decay 5e-4, batch 128, learning rate 0.01 divided by 10 when the validation top-1 error has not
improved for 3 epochs (at most 3 times; alexgui's guard for small validation sets stretches the 3
epochs to 7 on imagenette-mini's 500 validation images, see engine/training/schedule.py), 90 epochs,
dropout, LRN, random crops, flips and PCA colour noise. On the GPU it trains in bf16 autocast with
channels_last to get further within the budget; the final evaluation is fp32. The run stops at an epoch end
when the next epoch would not fit.

It also leaves the experiments section its calibration: a run's set-up time and one epoch's wall time.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from alexgui.config import RunConfig
from alexgui.engine.data.dataset import prepare_dataset
from alexgui.engine.events import (
    EpochDone,
    Failed,
    Finished,
    LrDropped,
    StepDone,
    Stopped,
)
from alexgui.engine.inference.predict import TorchPredictor
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.control import TrainControl
from alexgui.engine.training.evaluation import evaluate
from alexgui.engine.training.loop import train
from alexgui.paths import cache_dir
from benchmarks.gpu_suite.context import CheckFailed, SectionContext

NAME = "recipe"
TITLE = "The paper's recipe from random weights: validation error with the centre crop and ten crops"
WEIGHT = 0.17
PLOT = "recipe-curves.png"
COLUMNS = [
    ("evaluation", "evaluation", "text"), ("weights", "weights", "text"), ("precision", "precision", "text"),
    ("batch", "batch", "int"), ("top1_err", "top-1 error", "pct"), ("top5_err", "top-5 error", "pct"),
    ("epochs", "epochs trained", "int"), ("steps", "steps", "int"),
]  # fmt: skip


def recipe_config(ctx: SectionContext) -> RunConfig:
    cfg = RunConfig()  # the paper's recipe (alexgui/config.py)
    cfg.data.data = str(ctx.data)
    cfg.data.workers = 0
    cfg.data.crop, cfg.data.resize = ctx.sizes.crop, ctx.sizes.resize
    cfg.train.device = str(ctx.device)
    cfg.train.batch_size = ctx.sizes.recipe_batch
    cfg.train.epochs = ctx.sizes.recipe_epochs
    cfg.train.bf16 = cfg.train.channels_last = ctx.cuda
    cfg.train.checkpoint_minutes = 0
    return cfg


def run(ctx: SectionContext) -> None:
    cfg = recipe_config(ctx)
    folder = ctx.work / "recipe-run"
    shutil.rmtree(folder, ignore_errors=True)
    control = TrainControl()
    curves: dict[str, list[Any]] = {"steps": [], "epochs": [], "drops": []}
    start = time.monotonic()
    first_step_s: float | None = None
    epoch_ends: list[float] = []
    outcome = "ended without a final event"
    with RunDir.create(folder, cfg) as run_dir:
        for ev in train(cfg, run_dir, control):
            now = time.monotonic()
            if isinstance(ev, StepDone):
                first_step_s = first_step_s if first_step_s is not None else now - start
                curves["steps"].append((ev.step, ev.loss, ev.top1_err))
            elif isinstance(ev, EpochDone):
                epoch_ends.append(now)
                curves["epochs"].append({"epoch": ev.epoch + 1, "train_top1_err": ev.train_top1_err,
                                         "val_top1_err": ev.val_top1_err, "val_top5_err": ev.val_top5_err, "lr": ev.lr})
                epoch_s = _epoch_seconds(epoch_ends, start + (first_step_s or 0.0))
                if ctx.time_left() - ctx.sizes.eval_reserve_s < epoch_s * 1.1:
                    control.stop.set()  # the next epoch would not fit: stop at this epoch's end
            elif isinstance(ev, LrDropped):
                curves["drops"].append((ev.epoch + 1, ev.new_lr))
            elif isinstance(ev, Failed):
                raise CheckFailed(f"training failed: {ev.message}")
            elif isinstance(ev, Finished):
                outcome = f"the schedule ended ({ev.reason})"
            elif isinstance(ev, Stopped):
                outcome = "stopped by the section's budget"
            if ctx.time_left() < ctx.sizes.eval_reserve_s and not control.stop.is_set():
                control.stop.set()  # mid-epoch: keep the reserve for the evaluation
    train_s = time.monotonic() - start
    epochs = len(curves["epochs"])
    steps = curves["steps"][-1][0] if curves["steps"] else 0
    if epochs:
        ctx.shared["train_calibration"] = {
            "run_overhead_s": first_step_s, "epoch_s": _epoch_seconds(epoch_ends, start + (first_step_s or 0.0)),
            "batch": cfg.train.batch_size, "precision": "bf16" if ctx.cuda else "fp32",
        }  # fmt: skip
    precision = "bf16 autocast + channels_last" if ctx.cuda else "fp32"
    ctx.ran(f"the paper's recipe (config.py defaults) at batch {cfg.train.batch_size}, {precision}, crop "
            f"{cfg.data.crop}, seed 0: {epochs} of {cfg.train.epochs} epochs ({steps} steps) in {train_s:.0f} s; "
            f"{outcome}; learning-rate drops after epochs {[e for e, _ in curves['drops']] or 'none'}")  # fmt: skip
    if epochs:
        best = min(curves["epochs"], key=lambda e: e["val_top1_err"])
        ctx.row(precision, cfg.train.batch_size, evaluation="engine's validation (centre crop)",
                weights=f"best epoch ({best['epoch']})", top1_err=best["val_top1_err"], top5_err=best["val_top5_err"],
                epochs=epochs, steps=steps)  # fmt: skip
    final_evaluation(ctx, cfg, run_dir, epochs, steps)
    write_plot(ctx, curves)
    shutil.rmtree(folder, ignore_errors=True)


def _epoch_seconds(ends: list[float], first_step_at: float) -> float:
    """One epoch's wall time, validation and checkpoints included: the median gap between epoch ends."""
    gaps = [b - a for a, b in zip([first_step_at] + ends[:-1], ends, strict=True)]
    return statistics.median(gaps[1:] if len(gaps) > 1 else gaps)


def final_evaluation(ctx: SectionContext, cfg: RunConfig, run_dir: RunDir, epochs: int, steps: int) -> None:
    """The last weights, fp32, on the whole validation set: centre crop, then the paper's ten crops."""
    if not run_dir.last_checkpoint.exists():
        raise CheckFailed("the run saved no checkpoint to evaluate")
    data = prepare_dataset(cfg.data, cache_dir())  # the cache is filled already: a lookup
    predictor = TorchPredictor.from_checkpoint(run_dir.last_checkpoint, ctx.device)
    for ten_crop, label in ((False, "final weights, centre crop"), (True, "final weights, ten crops (softmax mean)")):
        _, top1, top5 = evaluate(predictor.model, predictor.preprocess, data.val, cfg.train.batch_size, ctx.device,
                                 ten_crop=ten_crop)  # fmt: skip
        ctx.row("fp32", cfg.train.batch_size, evaluation=label, weights=f"last (after {epochs} epochs)",
                top1_err=top1, top5_err=top5, epochs=epochs, steps=steps, val_images=len(data.val))  # fmt: skip


def write_plot(ctx: SectionContext, curves: dict[str, list[Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display, no Qt
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    if curves["steps"]:
        step, loss, _ = zip(*curves["steps"], strict=True)
        ax_loss.plot(step, loss, lw=0.6, color="#4e79a7")
    ax_loss.set(xlabel="step", ylabel="training loss", title="training loss per step")
    epochs = curves["epochs"]
    if epochs:
        x = [e["epoch"] for e in epochs]
        ax_err.plot(x, [e["train_top1_err"] for e in epochs], label="train top-1", color="#4e79a7")
        ax_err.plot(x, [e["val_top1_err"] for e in epochs], label="val top-1 (centre)", color="#f28e2b")
        ax_err.plot(x, [e["val_top5_err"] for e in epochs], label="val top-5 (centre)", color="#59a14f")
    for epoch, lr in curves["drops"]:
        ax_err.axvline(epoch, color="#999999", ls="--", lw=0.8)
        ax_err.annotate(f"lr {lr:g}", (epoch, 0.98), fontsize=7, rotation=90, va="top")
    ax_err.set(xlabel="epoch", ylabel="error", ylim=(0, 1), title="error per epoch")
    ax_err.legend(fontsize=8)
    fig.suptitle(f"paper recipe on {ctx.data.name}, {ctx.machine['device_name']}", fontsize=9)
    fig.tight_layout()
    path = ctx.out / PLOT
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    ctx.add_file(Path(path))

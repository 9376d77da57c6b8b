"""Section: the paper's five experiments (engine/experiments), as many seeds and epochs as the budget allows.

Each experiment is run_experiment() as `alexgui experiment NAME` runs it: every variant x seed an ordinary
run folder, then report.json, report.md and the plots. The share is split among the experiments by their
number of runs per seed (towers has one variant, the ablations two). A run costs about
overhead + epochs x epoch time; both come from the recipe section's run on the same data (or defaults
when it did not run) and are corrected after each experiment. At least 2 seeds on the GPU (1 in the dry
run); epochs beyond exp_max_epochs go into a third seed instead. A timer stops an experiment that runs
far past its part.

The run folders (about 1 GB of checkpoints each) stay in the scratch folder and are deleted after their
report is written; the reports go into OUT/experiments.tar.gz as experiments/<name>/..., which
`python -m benchmarks.gpu_suite.publish` unpacks into docs/experiments/<name>/.
"""

from __future__ import annotations

import math
import os
import shutil
import tarfile
import threading
import time
from pathlib import Path

from alexgui.engine.experiments import (
    EXPERIMENTS,
    ExperimentOptions,
    ExperimentStopped,
    ReportReady,
    RunEnds,
    run_experiment,
)
from benchmarks.gpu_suite.context import CheckFailed, SectionContext

NAME = "experiments"
TITLE = "The paper's experiments: relu-vs-tanh, lrn, pooling, augmentation, towers"
WEIGHT = 0.35
ORDER = ("relu-vs-tanh", "lrn", "pooling", "augmentation", "towers")
ARCHIVE = "experiments.tar.gz"
REPORT_SUFFIXES = (".json", ".md", ".png")
COLUMNS = [
    ("experiment", "experiment", "text"), ("precision", "precision", "text"), ("batch", "batch", "int"),
    ("seeds", "seeds", "int"), ("epochs", "epochs", "int"), ("runs", "runs", "text"),
    ("seconds", "seconds", "num"), ("outcome", "outcome", "text"),
]  # fmt: skip
# Without the recipe's calibration: a run's set-up (statistics, model, first step) and one epoch, seconds.
DEFAULT_COST = {"cuda": (10.0, 3.0), "cpu": (4.0, 3.0)}
REPORT_S = 3.0  # analysis and plots per experiment


def plan_size(seconds: float, variants: int, overhead_s: float, epoch_s: float, max_epochs: int,
              min_seeds: int, max_seeds: int) -> tuple[int, int]:
    """(seeds, epochs) that fit `seconds` for one experiment of `variants` runs per seed: min_seeds
    seeds with as many epochs as fit, up to max_epochs; time left beyond that buys more seeds."""
    epochs = math.floor((seconds / (min_seeds * variants) - overhead_s) / max(epoch_s, 1e-3))
    if epochs <= max_epochs:
        return min_seeds, epochs
    seeds = math.floor(seconds / (variants * (overhead_s + max_epochs * epoch_s)))
    return max(min_seeds, min(max_seeds, seeds)), max_epochs


def base_options(ctx: SectionContext) -> ExperimentOptions:
    sizes = ctx.sizes
    return ExperimentOptions(
        data=str(ctx.data), device=str(ctx.device), batch_size=sizes.exp_batch, bf16=ctx.cuda, crop=sizes.crop,
        resize=sizes.resize, workers=0, snapshot_seconds=1.0 if ctx.cuda else 0.0,
        smooth_steps=20 if ctx.cuda else 1,  # the dry run has one step per run
    )  # fmt: skip


def run(ctx: SectionContext) -> None:
    sizes = ctx.sizes
    overhead_s, epoch_s = DEFAULT_COST[ctx.device.type if ctx.cuda else "cpu"]
    calibration = ctx.shared.get("train_calibration")
    if calibration:
        overhead_s, epoch_s = calibration["run_overhead_s"] + 2.0, calibration["epoch_s"]  # + model build, stats
    staging = ctx.work / "experiment-reports"
    shutil.rmtree(staging, ignore_errors=True)
    runs_per_seed = {name: len(EXPERIMENTS[name].variants) for name in ORDER}
    problems: list[str] = []
    precision = "bf16 autocast" if ctx.cuda else "fp32"
    for i, name in enumerate(ORDER):
        ctx.check_time(f"experiment {name}")
        units_left = sum(runs_per_seed[n] for n in ORDER[i:])
        allotted = max(ctx.time_left(), 0.0) * runs_per_seed[name] / units_left
        min_seeds = sizes.exp_min_seeds
        seeds, epochs = plan_size(allotted - REPORT_S, runs_per_seed[name], overhead_s, epoch_s,
                                  sizes.exp_max_epochs, min_seeds, sizes.exp_max_seeds)  # fmt: skip
        one_epoch_s = min_seeds * runs_per_seed[name] * (overhead_s + epoch_s) + REPORT_S
        if epochs < 1 and (ctx.dry_run or allotted >= 0.6 * one_epoch_s):
            # Nearly fits (the estimate is rough; later experiments absorb the difference), and the dry
            # run checks the machinery whatever the estimate says.
            seeds, epochs = min_seeds, 1
        if epochs < 1:
            ctx.row(precision, sizes.exp_batch, experiment=name, seeds=0, epochs=0, runs="",
                    outcome=f"skipped: {allotted:.0f} s left for it, {min_seeds} seeds of 1 epoch need "
                    f"~{one_epoch_s:.0f} s")  # fmt: skip
            problems.append(f"{name}: skipped for lack of time")
            continue
        start = time.monotonic()
        outcome, runs = run_one(ctx, name, seeds, epochs, staging, deadline_s=allotted * 1.5 + 30)
        elapsed = time.monotonic() - start
        n_runs = seeds * runs_per_seed[name]
        measured = ((elapsed - REPORT_S) / n_runs - overhead_s) / epochs
        if measured > 0:
            epoch_s = measured  # this machine's real cost, for the experiments still to come
        ctx.row(precision, sizes.exp_batch, experiment=name, seeds=seeds, epochs=epochs, runs=runs,
                seconds=elapsed, outcome=outcome)  # fmt: skip
        if outcome != "report written":
            problems.append(f"{name}: {outcome}")
    ctx.ran(f"{len(ORDER)} experiments on {ctx.data.name} at batch {sizes.exp_batch}, crop {sizes.crop}, "
            f"{precision}; seeds and epochs per experiment in the table (at least {sizes.exp_min_seeds}), sized from "
            f"~{overhead_s:.1f} s set-up + {epoch_s:.2f} s per epoch and run; reports in {ARCHIVE}")  # fmt: skip
    if problems:
        raise CheckFailed("; ".join(problems))


def run_one(ctx: SectionContext, name: str, seeds: int, epochs: int, staging: Path,
            deadline_s: float) -> tuple[str, str]:
    """Run one experiment; (outcome, run counts). Its report goes into the archive; its runs are deleted."""
    out = ctx.work / "experiments" / name
    shutil.rmtree(out, ignore_errors=True)
    options = base_options(ctx)
    options.seeds, options.epochs = seeds, epochs
    stop = threading.Event()
    timer = threading.Timer(deadline_s, stop.set)  # stops after the current step; the run keeps its checkpoint
    timer.daemon = True
    timer.start()
    ends: dict[str, int] = {}
    outcome = "ended without a report"
    try:
        for update in run_experiment(name, out, options, stop=stop):
            if isinstance(update, RunEnds):
                ends[update.outcome] = ends.get(update.outcome, 0) + 1
                if update.outcome == "failed":
                    ctx.note(f"{name} {update.variant} seed {update.seed} failed: {update.message}")
            elif isinstance(update, ExperimentStopped):
                outcome = f"stopped after {deadline_s:.0f} s (far past its part of the budget); no report"
            elif isinstance(update, ReportReady):
                outcome = "report written"
                keep_report(ctx, name, update.out, staging)
                for line in update.report.get("summary", []):
                    ctx.note(f"{name}: {line}")
    except Exception as e:  # noqa: BLE001 - one experiment's failure must not stop the others
        outcome = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        timer.cancel()
        shutil.rmtree(out, ignore_errors=True)
    return outcome, ", ".join(f"{n} {kind}" for kind, n in ends.items())


def keep_report(ctx: SectionContext, name: str, folder: Path, staging: Path) -> None:
    """Copy report.json, report.md and the plots to staging/experiments/<name>/ and re-pack the archive, so
    that a run killed later still returns the reports written so far."""
    target = staging / "experiments" / name
    target.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_file() and f.suffix in REPORT_SUFFIXES:
            shutil.copy2(f, target / f.name)
    archive = ctx.out / ARCHIVE
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(staging / "experiments", arcname="experiments")
    os.replace(tmp, archive)
    ctx.add_file(archive)

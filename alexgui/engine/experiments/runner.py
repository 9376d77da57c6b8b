"""Run an experiment: every variant x seed as an ordinary run directory, then the report.

    OUT/<variant>-seed<k>/     a run directory (RunDir.create + training.loop.train), openable in the monitor
    OUT/report.json, report.md, *.png

Re-running the same command picks up where it stopped: a run whose metrics.jsonl ends with a Finished
event under the same stopping settings is skipped, any other is resumed from its last checkpoint
(train(..., resume=True)), and a folder holding a run with different model or data settings is an
error rather than something to overwrite or mix into the comparison.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexgui.config import ConfigError
from alexgui.engine.events import Event, Failed, Finished, RunStarted, StepDone, Stopped
from alexgui.engine.experiments.definitions import EXPERIMENTS, Experiment, get_experiment
from alexgui.engine.experiments.plan import (
    TOWER_HISTORY,
    ExperimentError,
    ExperimentOptions,
    PlannedRun,
    TowerHistory,
    plan,
    tower_scores,
)
from alexgui.engine.store.atomic import is_temporary
from alexgui.engine.store.lock import LOCK_NAME, FolderLock, take_lock
from alexgui.engine.store.metrics_log import read_events
from alexgui.engine.store.ownership import Ownership, describe_foreign, ownership
from alexgui.engine.store.rundir import RunDir, RunDirError, is_run_dir


@dataclass
class RunBegins:
    index: int
    total: int
    variant: str
    seed: int
    path: Path
    action: str  # "train", "resume" or "skip" (finished earlier)


@dataclass
class RunEvent:
    index: int
    total: int
    variant: str
    seed: int
    event: Event


@dataclass
class TowerSnapshot:
    index: int
    total: int
    variant: str
    seed: int
    step: int
    scores: dict[int, float]  # tower -> mean colour specificity of its conv1 kernels


@dataclass
class RunEnds:
    index: int
    total: int
    variant: str
    seed: int
    outcome: str  # "finished", "skipped", "stopped" or "failed"
    message: str = ""


@dataclass
class ExperimentStopped:
    out: Path


@dataclass
class ReportReady:
    out: Path
    report: dict[str, Any]
    files: list[Path]


Update = RunBegins | RunEvent | TowerSnapshot | RunEnds | ExperimentStopped | ReportReady


def run_experiment(
    name: str, out: str | Path, options: ExperimentOptions, stop: threading.Event | None = None
) -> Iterator[Update]:
    """Train every planned run that is not finished yet, then analyse all of them and write the report.

    Stops (without a report) when `stop` is set; the interrupted run keeps its checkpoint and the
    next call resumes it.
    """
    experiment = get_experiment(name)
    options.check()
    if options.arch not in experiment.archs:
        raise ExperimentError(
            f"{experiment.name} needs the {' or '.join(experiment.archs)} network: the {options.arch!r} "
            "architecture does not have the setting this experiment changes"
        )
    out = Path(out)
    try:
        runs = plan(experiment, out, options)  # every setting checked before the folder is made
    except ConfigError as e:
        raise ExperimentError(str(e)) from None
    _prepare_out(out)
    lock = _lock_out(out)
    try:
        yield from _run_all(experiment, out, options, runs, stop or threading.Event())
    finally:
        lock.release()


def _run_all(
    experiment: Experiment, out: Path, options: ExperimentOptions, runs: list[PlannedRun], stop: threading.Event
) -> Iterator[Update]:
    from alexgui.engine.experiments.analysis import analyse
    from alexgui.engine.experiments.report import write_report

    actions = [_action_for(run) for run in runs]  # every folder checked before any training starts
    total = len(runs)
    for run, action in zip(runs, actions):
        if stop.is_set():
            yield ExperimentStopped(out)
            return
        yield RunBegins(run.index, total, run.variant.name, run.seed, run.path, action)
        if action == "skip":
            yield RunEnds(run.index, total, run.variant.name, run.seed, "skipped", "finished earlier")
            continue
        ends = yield from _train_one(experiment, run, total, options, resume=action == "resume", stop=stop)
        yield ends
        if ends.outcome == "stopped":
            yield ExperimentStopped(out)
            return
    result = analyse(experiment, options, runs)
    files = write_report(out, result.report, result.images)
    yield ReportReady(out, result.report, files)


def _prepare_out(out: Path) -> None:
    """Make `out`, or accept it when it is empty or already an alexgui experiment's folder (to resume it
    or add to it). Anything else, a user's notes or another tool's files, is refused before a lock
    file, a run or a report lands in it: write_report would replace a report.md of theirs."""
    if out.exists() and not out.is_dir():
        raise ExperimentError(f"{out}: exists and is a file, not a folder")
    if is_run_dir(out) and ownership(out) is not Ownership.FOREIGN:
        raise ExperimentError(f"{out}: is a run directory; an experiment needs a folder of its own for its runs")
    if out.is_dir():
        _check_out_is_an_experiments(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExperimentError(f"{out}: cannot create the folder ({e.strerror or e})") from None


def _lock_out(out: Path) -> FolderLock:
    """One experiment at a time in a folder (each of its runs is locked too while it trains)."""
    return take_lock(out, "running an experiment in this folder", ExperimentError)


def _check_out_is_an_experiments(out: Path) -> None:
    """ExperimentError unless the folder `out` holds nothing of anyone's (at most lock files, temporaries and
    the empty run folders of a killed experiment) or what an alexgui experiment writes: its report.json,
    or a run of it (then it is resumed or added to; a foreign folder among its runs is _action_for's)."""
    from alexgui.engine.experiments.report import REPORT_JSON, load_report

    try:
        entries = [p for p in out.iterdir() if p.name != LOCK_NAME and not is_temporary(p)]
    except OSError as e:
        raise ExperimentError(f"{out}: the folder cannot be listed ({e.strerror or e})") from None
    runs = {p: ownership(p) for p in entries if _RUN_FOLDER.fullmatch(p.name) and p.is_dir()}
    if all(runs.get(p) is Ownership.EMPTY for p in entries):
        return
    if any(kind in (Ownership.MARKED, Ownership.LEGACY) for kind in runs.values()):
        return
    try:
        load_report(out / REPORT_JSON)  # its format field says alexgui wrote it
        return
    except ValueError:
        pass
    foreign = sorted(p for p, kind in runs.items() if kind is Ownership.FOREIGN)
    if foreign:  # named like a run of ours: say which folder is in the way
        raise _not_an_alexgui_run(foreign[0])
    raise ExperimentError(
        f"{out}: the folder is not empty and holds no alexgui experiment; {describe_foreign(out)} alexgui never "
        "writes into such a folder: choose an empty or new one, or an earlier experiment's folder to resume it"
    )


def _not_an_alexgui_run(path: Path) -> ExperimentError:
    what = describe_foreign(path) if path.is_dir() else "it is a file."
    return ExperimentError(f"{path}: exists and is not an alexgui run; {what} Move it away or choose another folder")


# An experiment's run folders are named <variant>-seed<k> (plan.plan), for the variants of any experiment.
_RUN_FOLDER = re.compile(
    "(" + "|".join(re.escape(v.name) for e in EXPERIMENTS.values() for v in e.variants) + r")-seed\d+"
)


def _action_for(run: PlannedRun) -> str:
    """'train' (new), 'skip' (finished with these settings) or 'resume'; ExperimentError for a foreign run."""
    if not run.path.exists():
        return "train"
    kind = ownership(run.path) if run.path.is_dir() else Ownership.FOREIGN
    if kind is Ownership.EMPTY:
        return "train"
    if kind is Ownership.FOREIGN:
        raise _not_an_alexgui_run(run.path)
    try:
        rundir = RunDir.open(run.path)
        existing = rundir.config()
    except RunDirError as e:
        raise ExperimentError(str(e)) from None
    mine, theirs = run.cfg.to_dict(), existing.to_dict()
    theirs["model"]["num_classes"] = mine["model"]["num_classes"]  # the trainer sets it from the data
    differing = [
        f"{section}.{key}"
        for section in ("model", "data")
        for key in mine[section]
        if key not in _MAY_DIFFER and mine[section][key] != theirs[section].get(key)
    ]
    if run.cfg.train.seed != existing.train.seed:
        differing.append("train.seed")
    if differing:
        raise ExperimentError(
            f"{run.path}: holds a run with different settings ({', '.join(differing)}); "
            "choose another output folder for these settings"
        )
    events, _ = read_events(run.path)
    finished = any(isinstance(e, Finished) for e in events)
    same_stop = (existing.train.epochs, existing.train.max_steps) == (run.cfg.train.epochs, run.cfg.train.max_steps)
    if finished and same_stop:
        return "skip"
    from alexgui.engine.training.checkpoints import check_resumable  # torch: imported when a run is near
    from alexgui.engine.training.control import TrainingError

    try:
        check_resumable(rundir)
    except TrainingError:
        raise ExperimentError(
            f"{rundir.last_checkpoint}: missing, but the run's log records training; there is nothing to resume "
            f"from. Delete {run.path} to train this run again"
        ) from None
    return "resume"


_MAY_DIFFER = {"workers", "cache"}  # how the data is read, not what it is


def _train_one(
    experiment: Experiment,
    run: PlannedRun,
    total: int,
    options: ExperimentOptions,
    resume: bool,
    stop: threading.Event,
) -> Generator[Update, None, RunEnds]:
    from alexgui.engine.training.control import TrainControl
    from alexgui.engine.training.loop import train

    cfg = run.cfg  # train() works on its own copy, so the plan stays as planned
    history = TowerHistory(run.path / TOWER_HISTORY) if experiment.kind == "towers" else None
    pending: list[dict[str, Any]] = []
    control = TrainControl(stop=stop, snapshot_seconds=options.snapshot_seconds)
    if history is not None:
        # Called in the training thread during next(): the kernels belong to the last step seen.
        control.on_kernels = lambda kernels: pending.append({"conv1": kernels["conv1"]})
    outcome, message = "stopped", "ended without a final event"
    last_step = 0
    try:  # as the run's one writer; a resumed run's config.toml is rewritten only once resuming fits
        rundir = RunDir.open_for_writing(run.path) if resume else RunDir.create(run.path, cfg)
    except RunDirError as e:
        raise ExperimentError(str(e)) from None
    with rundir:
        for event in train(cfg, rundir, control, resume=resume):
            if history is not None:
                yield from _flush_snapshots(history, pending, last_step, run, total)
            if isinstance(event, RunStarted):
                last_step = event.step
                if history is not None:
                    history.truncate(event.step)  # later snapshots (after the checkpoint) are redone
            elif isinstance(event, StepDone):
                last_step = event.step
            yield RunEvent(run.index, total, run.variant.name, run.seed, event)
            if isinstance(event, Finished):
                outcome, message = "finished", event.reason
            elif isinstance(event, Stopped):
                outcome, message = "stopped", f"stopped at step {event.step}"
            elif isinstance(event, Failed):
                outcome, message = "failed", event.message
        if history is not None:
            yield from _flush_snapshots(history, pending, last_step, run, total)
    return RunEnds(run.index, total, run.variant.name, run.seed, outcome, message)


def _flush_snapshots(
    history: TowerHistory, pending: list[dict[str, Any]], step: int, run: PlannedRun, total: int
) -> Iterator[Update]:
    while pending:
        scores = tower_scores(pending.pop(0)["conv1"])
        history.add(step, scores)
        yield TowerSnapshot(run.index, total, run.variant.name, run.seed, step, scores)

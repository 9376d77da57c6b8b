"""An experiment's plan: its options, the runs it needs (every variant x seed, each an ordinary run
directory), their configurations, and the per-tower colour history a "towers" experiment keeps in
each run folder. The runner executes the plan; the analysis reads what it left."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexgui.config import RunConfig
from alexgui.engine.experiments.definitions import Experiment, Variant
from alexgui.engine.store.atomic import atomic_write_text
from alexgui.engine.understand.kernels import tower_specificity
from alexgui.errors import AlexguiError

TOWER_HISTORY = "tower_colour.json"  # per towers run: conv1 colour specificity per tower over the steps


class ExperimentError(AlexguiError):
    """Settings or an output folder an experiment cannot use; the message names the problem."""


@dataclass
class ExperimentOptions:
    data: str = "demo"  # image folder or "demo"
    epochs: int = 30
    max_steps: int = 0  # per run; 0 = epochs decide. Ablations compare the last epoch's validation error.
    seeds: int = 1  # runs per variant with seeds 0..K-1; 3 or more to see the spread
    device: str = "cpu"
    batch_size: int = 128
    lr: float = 0.01
    arch: str = "paper"
    bf16: bool = False
    crop: int = 224  # smaller crops run faster (the net pools adaptively) but are not the paper's input
    resize: int = 256
    workers: int = 2
    val_fraction: float = 0.1
    target_error: float | None = None  # relu-vs-tanh: None = half of chance error (see analysis.py)
    smooth_steps: int = 20  # relu-vs-tanh: trailing window of the running training error
    snapshot_seconds: float = 1.0  # towers: how often conv1's kernels are scored while training

    def check(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1 (got {self.epochs})")
        if self.max_steps < 0:
            problems.append(f"max steps must be 0 (no limit) or more (got {self.max_steps})")
        if self.seeds < 1:
            problems.append(f"seeds must be at least 1 (got {self.seeds})")
        if self.batch_size < 1:
            problems.append(f"batch size must be at least 1 (got {self.batch_size})")
        if not self.lr > 0:
            problems.append(f"learning rate must be positive (got {self.lr})")
        if self.target_error is not None and not 0 < self.target_error < 1:
            problems.append(f"target error must be between 0 and 1 (got {self.target_error})")
        if self.smooth_steps < 1:
            problems.append(f"smoothing window must be at least 1 step (got {self.smooth_steps})")
        if not 0 < self.crop <= self.resize:
            problems.append(f"crop {self.crop} must be positive and at most the resize {self.resize}")
        if problems:
            raise ExperimentError("; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PlannedRun:
    index: int
    variant: Variant
    seed: int
    path: Path
    cfg: RunConfig


def base_config(options: ExperimentOptions) -> RunConfig:
    """The paper's recipe with the experiment's amount of work, device and data."""
    cfg = RunConfig()
    cfg.model.arch = options.arch  # type: ignore[assignment]
    cfg.data.data = options.data
    cfg.data.crop = options.crop
    cfg.data.resize = options.resize
    cfg.data.workers = options.workers
    cfg.data.val_fraction = options.val_fraction
    cfg.train.epochs = options.epochs
    cfg.train.max_steps = options.max_steps
    cfg.train.batch_size = options.batch_size
    cfg.train.lr = options.lr
    cfg.train.device = options.device
    cfg.train.bf16 = options.bf16
    cfg.train.log_every = 1  # the step curves and the snapshots' step numbers need every step
    return cfg


def plan(experiment: Experiment, out: Path, options: ExperimentOptions) -> list[PlannedRun]:
    """Seed-major order (seed 0: every variant, then seed 1, ...) so a stopped experiment has balanced pairs."""
    base = base_config(options)
    runs: list[PlannedRun] = []
    for seed in range(options.seeds):
        for variant in experiment.variants:
            values = base.to_dict()
            values["train"]["seed"] = seed
            for key, value in variant.overrides:
                section, name = key.split(".")
                values[section][name] = value
            cfg = RunConfig.from_dict(values, f"experiment {experiment.name} variant {variant.name}")
            runs.append(PlannedRun(len(runs), variant, seed, out / f"{variant.name}-seed{seed}", cfg))
    return runs


# ---- updates the runner yields (to the CLI printer or the GUI panel) ----------------------------


def tower_scores(conv1: Any) -> dict[int, float]:
    """Mean colour specificity (engine/understand/kernels.py) of each tower's conv1 kernels, (96, 3, 11, 11) in."""
    return tower_specificity(conv1, conv1_towers(conv1.shape[0]))


def conv1_towers(count: int) -> list[int]:
    """Tower of each conv1 kernel as model.kernels('conv1') orders them: tower 0's half first."""
    return [i * 2 // count for i in range(count)]


class TowerHistory:
    """Per-tower conv1 colour specificity over the steps of one run, kept in the run folder (atomic writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.points: list[dict[str, Any]] = load_tower_history(path)

    def truncate(self, step: int) -> None:
        self.points = [p for p in self.points if p["step"] < step]

    def add(self, step: int, scores: dict[int, float]) -> None:
        self.points = [p for p in self.points if p["step"] != step]
        self.points.append({"step": step, "towers": {str(t): s for t, s in scores.items()}})
        atomic_write_text(self.path, json.dumps({"format": "alexgui-tower-colour/1", "points": self.points}) + "\n")


def load_tower_history(path: Path) -> list[dict[str, Any]]:
    """The points of a tower_colour.json; [] when absent. A damaged file is reported, not guessed at."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExperimentError(f"{path}: cannot read the colour history ({e})") from None
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(points, list) or not all(
        isinstance(p, dict) and isinstance(p.get("step"), int) and isinstance(p.get("towers"), dict) for p in points
    ):
        raise ExperimentError(f"{path}: not an alexgui colour history (expected {{'points': [{{'step', 'towers'}}]}})")
    return points

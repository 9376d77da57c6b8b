"""Re-measure the paper's claims: each experiment trains a few run variants and writes a report.

    from alexgui.engine.experiments import EXPERIMENTS, ExperimentOptions, run_experiment
    for update in run_experiment("lrn", "out/lrn", ExperimentOptions(data="photos", seeds=3)):
        ...

definitions.py  what each experiment changes and what the paper reports
runner.py       run directories per variant and seed, resume and skip, the updates it yields
analysis.py     the measurements and the report's content
stats.py        mean ± std over seeds and the "within noise" rule
The report files are written by alexgui/engine/experiments/report.py.
"""

from alexgui.engine.experiments.definitions import (
    EXPERIMENTS,
    Experiment,
    Variant,
    get_experiment,
)
from alexgui.engine.experiments.plan import (
    ExperimentError,
    ExperimentOptions,
    PlannedRun,
    plan,
)
from alexgui.engine.experiments.runner import (
    ExperimentStopped,
    ReportReady,
    RunBegins,
    RunEnds,
    RunEvent,
    TowerSnapshot,
    Update,
    run_experiment,
)
from alexgui.engine.experiments.stats import Comparison, Spread, compare, spread

__all__ = [
    "EXPERIMENTS",
    "Comparison",
    "Experiment",
    "ExperimentError",
    "ExperimentOptions",
    "ExperimentStopped",
    "PlannedRun",
    "ReportReady",
    "RunBegins",
    "RunEnds",
    "RunEvent",
    "Spread",
    "TowerSnapshot",
    "Update",
    "Variant",
    "compare",
    "get_experiment",
    "plan",
    "run_experiment",
    "spread",
]

"""Experiments end to end on a tiny generated dataset (one step per epoch), their statistics and resume."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexgui.cli import main
from alexgui.engine.events import Finished, StepDone
from alexgui.engine.experiments import (
    EXPERIMENTS,
    ExperimentError,
    ExperimentOptions,
    ExperimentStopped,
    ReportReady,
    RunBegins,
    RunEvent,
    TowerSnapshot,
    compare,
    run_experiment,
    spread,
)
from alexgui.engine.experiments.curves import running_mean, steps_to_target
from alexgui.engine.experiments.plan import TOWER_HISTORY, conv1_towers, tower_scores
from alexgui.engine.experiments.report import load_report
from alexgui.engine.experiments.stats import SINGLE_SEED
from alexgui.engine.experiments.tower_analysis import tower_split
from alexgui.engine.store.metrics_log import read_events
from alexgui.engine.store.rundir import is_run_dir
from tests.helpers import make_dataset

PAPER_NUMBER_IN_REPORT = {
    "relu-vs-tanh": "reports 6x",
    "lrn": "1.4",
    "pooling": "0.4",
    "augmentation": "by over 1%",
    "towers": "in every run",
}


@pytest.fixture(autouse=True)
def _free_checkpoints(tmp_path: Path) -> Iterator[None]:
    """Each paper-network run leaves ~1 GB of checkpoints (61M weights + momentum, last and best): drop them
    after the test instead of letting pytest keep them for three sessions."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 4 training images and batch 4: one step per epoch, the cheapest run that still validates.
    return make_dataset(tmp_path_factory.mktemp("exp-data"), classes=2, train_per_class=2, val_per_class=1)


def tiny_options(data: Path, **changes: object) -> ExperimentOptions:
    options = ExperimentOptions(
        data=str(data), epochs=1, batch_size=4, crop=64, resize=73, workers=0, snapshot_seconds=0.0, smooth_steps=1
    )
    for key, value in changes.items():
        setattr(options, key, value)
    return options


def collect(name: str, out: Path, options: ExperimentOptions, stop: threading.Event | None = None) -> list[object]:
    return list(run_experiment(name, out, options, stop=stop))


def test_every_experiment_is_defined_with_the_papers_claim() -> None:
    assert set(EXPERIMENTS) >= set(PAPER_NUMBER_IN_REPORT)
    for e in EXPERIMENTS.values():
        assert e.paper_claim and e.question
        assert e.paper_choice in {v.name for v in e.variants}


@pytest.mark.parametrize("name", list(PAPER_NUMBER_IN_REPORT))
def test_experiment_runs_end_to_end_and_writes_its_report(tiny_data: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    updates = collect(name, out, tiny_options(tiny_data))
    ready = updates[-1]
    assert isinstance(ready, ReportReady)
    experiment = EXPERIMENTS[name]
    # Each variant is an ordinary, finished run directory.
    for variant in experiment.variants:
        run = out / f"{variant.name}-seed0"
        assert is_run_dir(run)
        events, problems = read_events(run)
        assert not problems and any(isinstance(e, Finished) for e in events)
    report = load_report(out)
    assert report["experiment"] == name and report["seeds"] == 1
    assert report["data"]["classes"] == 2 and report["data"]["train_images"] == 4
    assert [r["status"] for r in report["runs"]] == ["finished"] * len(experiment.variants)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert PAPER_NUMBER_IN_REPORT[name] in md
    assert experiment.paper_claim in md
    assert report["plots"]
    for plot in report["plots"]:
        assert f"]({plot})" in md
        with Image.open(out / plot) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 100
    if name == "relu-vs-tanh":
        assert "not reached" in md or "faster" in md
        assert report["result"]["target_error"] == pytest.approx(0.25)  # half of chance error for 2 classes
    elif name == "towers":
        snapshots = [u for u in updates if isinstance(u, TowerSnapshot)]
        assert [s.step for s in snapshots] == [0, 1]  # at initialisation and after the one step
        history = json.loads((out / "paper-seed0" / TOWER_HISTORY).read_text())
        assert [p["step"] for p in history["points"]] == [0, 1]
        run = report["result"]["per_run"][0]
        assert run["colour_tower"] in (0, 1) and run["split"] >= 0
        with Image.open(out / "towers-conv1-seed0.png") as grid:
            assert grid.size[1] > grid.size[0] / 8  # two tower blocks of 3 rows of 16 tiles
    else:
        assert SINGLE_SEED in md  # one seed: the report must not claim an effect


def test_colour_specificity_separates_coloured_from_grey_kernels() -> None:
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.normal(size=(48, 1, 11, 11)), 3, axis=1)  # R = G = B at every pixel
    coloured = rng.normal(size=(48, 3, 11, 11))
    conv1 = np.concatenate([grey, coloured]).astype(np.float32)
    scores = tower_scores(conv1)
    assert scores[0] == pytest.approx(0.0, abs=1e-6)
    assert scores[1] > 0.5
    split = tower_split(conv1, conv1_towers(96))
    assert split["colour_tower"] == 1 and split["split"] > 0.5
    assert split["kernels_compared"]["within_noise"] is False
    # Swapped: the measure follows the kernels, not the tower index.
    assert tower_split(np.concatenate([coloured, grey]).astype(np.float32), conv1_towers(96))["colour_tower"] == 0


def test_statistics_call_overlap_noise_and_separation_an_effect() -> None:
    overlapping = compare([0.50, 0.53, 0.47], [0.51, 0.48, 0.54])
    assert overlapping.within_noise is True and overlapping.verdict.startswith("within noise")
    separated = compare([0.50, 0.51, 0.49], [0.40, 0.41, 0.39])
    assert separated.within_noise is False and separated.verdict.startswith("outside noise")
    assert separated.difference == pytest.approx(-0.10)
    single = compare([0.5], [0.4])
    assert single.within_noise is None and single.verdict == SINGLE_SEED
    s = spread([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert s.text() == "2.00 ± 1.00" and spread([0.4]).text(100, unit="%") == "40.00%"


def test_steps_to_target_uses_the_running_mean() -> None:
    steps = np.arange(1, 9)
    errors = np.array([0.9, 0.1, 0.9, 0.8, 0.3, 0.2, 0.2, 0.1])
    assert np.isnan(running_mean(errors, 3)[:2]).all()
    # One lucky batch (step 2) does not count; the 3-step mean first reaches 0.25 at step 7.
    assert steps_to_target(steps, errors, 0.25, window=3) == 7
    assert steps_to_target(steps, errors, 0.25, window=1) == 2
    assert steps_to_target(steps, errors, 0.05, window=3) is None


def test_stopped_experiment_resumes_then_skips_finished_runs(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "towers"
    options = tiny_options(tiny_data, epochs=2)
    stop = threading.Event()
    first: list[object] = []
    for update in run_experiment("towers", out, options, stop=stop):
        first.append(update)
        if isinstance(update, RunEvent) and isinstance(update.event, StepDone):
            stop.set()  # after the first step: the run saves a checkpoint and the experiment ends
    assert isinstance(first[-1], ExperimentStopped)
    assert not (out / "report.json").exists()

    second = collect("towers", out, tiny_options(tiny_data, epochs=2))
    assert [u.action for u in second if isinstance(u, RunBegins)] == ["resume"]
    resumed_steps = [u.event.step for u in second if isinstance(u, RunEvent) and isinstance(u.event, StepDone)]
    assert resumed_steps == [2]  # continued after step 1, not from scratch
    assert isinstance(second[-1], ReportReady)
    assert load_report(out)["runs"][0]["steps"] == 2
    history = json.loads((out / "paper-seed0" / TOWER_HISTORY).read_text())
    assert [p["step"] for p in history["points"]] == [0, 1, 2]  # no step twice after the resume

    # The command line over the same folder: everything finished, nothing trained again.
    argv = ["experiment", "towers", "--data", str(tiny_data), "--out", str(out), "--epochs", "2",
            "--batch-size", "4", "--crop", "64", "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipping (finished earlier)" in printed and "report:" in printed and "tower" in printed

    # Different settings in the same folder: refused before anything trains.
    with pytest.raises(ExperimentError, match="different settings"):
        collect("towers", out, tiny_options(tiny_data, epochs=2, crop=72, resize=80))


def test_bad_settings_are_refused_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ExperimentError, match="needs the paper network"):
        collect("lrn", tmp_path / "x", ExperimentOptions(arch="torchvision"))
    with pytest.raises(ExperimentError, match="seeds must be at least 1"):
        collect("lrn", tmp_path / "x", ExperimentOptions(seeds=0))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ExperimentError, match="is a file"):
        collect("lrn", tmp_path / "file", ExperimentOptions())
    assert main(["experiment", "towers", "--out", str(tmp_path / "y"), "--arch", "torchvision"]) == 2
    assert "needs the paper network" in capsys.readouterr().err


# -- the output folder: new, empty, or an experiment's own; never a folder of the user's -------------


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `folder`, lock files and temporaries included."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def test_a_folder_of_the_users_is_refused_and_left_byte_for_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "report.md").write_text("# My report\n\nWeeks of work.\n", encoding="utf-8")
    (notes / "notes.txt").write_bytes(b"mine\n")
    before = tree(notes)
    small = ["--epochs", "1", "--max-steps", "1", "--batch-size", "2", "--crop", "63", "--workers", "0"]  # cheap if taken
    assert main(["experiment", "lrn", "--out", str(notes), *small]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"alexgui experiment: {notes}: the folder is not empty and holds no alexgui experiment; "), err
    assert "it holds notes.txt, report.md." in err  # what is there (ownership.describe_foreign)
    assert tree(notes) == before  # no report, run folder, plot or .alexgui.lock written into it

    # Another tool's report.json proves nothing, and a folder named like a run of ours is named.
    (notes / "report.json").write_text('{"format": "quarterly-report/2"}\n', encoding="utf-8")
    (notes / "lrn-seed0").mkdir()
    (notes / "lrn-seed0" / "data.csv").write_text("a,b\n", encoding="utf-8")
    before = tree(notes)
    with pytest.raises(ExperimentError, match="lrn-seed0: exists and is not an alexgui run; it holds data.csv"):
        collect("lrn", notes, ExperimentOptions())
    assert tree(notes) == before


@pytest.mark.parametrize("kind", ["new", "empty", "killed at its start", "its report", "its run"])
def test_an_experiments_own_folder_is_taken(tmp_path: Path, kind: str) -> None:
    """Accepted to resume or add to: checked by the runner's first steps, stopped before any training."""
    from alexgui.engine.experiments import get_experiment, plan
    from alexgui.engine.store.lock import LOCK_NAME
    from alexgui.engine.store.rundir import RunDir

    out = tmp_path / "exp"
    options = ExperimentOptions()
    if kind != "new":
        out.mkdir()
    if kind == "killed at its start":  # its own lock, and a run folder with nothing but the run's lock
        (out / LOCK_NAME).write_text("123\n")
        (out / "lrn-seed0").mkdir()
        (out / "lrn-seed0" / LOCK_NAME).write_text("123\n")
    elif kind == "its report":  # a finished experiment the user added a file to
        (out / "report.json").write_text('{"format": "alexgui-experiment-report/1"}\n', encoding="utf-8")
        (out / "report.md").write_text("# lrn\n", encoding="utf-8")
        (out / "my-notes.txt").write_text("seen\n", encoding="utf-8")
    elif kind == "its run":  # stopped before its first step, its run made by alexgui
        first = plan(get_experiment("lrn"), out, options)[0]
        RunDir.create(first.path, first.cfg).close()
    stop = threading.Event()
    stop.set()
    assert [type(u) for u in collect("lrn", out, options, stop=stop)] == [ExperimentStopped]

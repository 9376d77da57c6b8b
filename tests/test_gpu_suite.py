"""The GPU suite (benchmarks/gpu_suite) cannot rot between GPU sessions: its budget arithmetic, its
runner's bookkeeping (a failing or overrunning section is recorded and the suite goes on), publishing a
result, and the whole suite as a dry run on the CPU, checked section by section."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from benchmarks.gpu_suite import publish, report, runner
from benchmarks.gpu_suite.context import DRY, BudgetExceeded, SectionContext, share
from benchmarks.gpu_suite.experiments import ARCHIVE, ORDER, plan_size

ROOT = Path(__file__).resolve().parents[1]
SECTION_NAMES = ["throughput", "realdata", "towers", "inference", "recipe", "experiments"]
ROW_KEYS = {"device", "torch", "cuda", "precision", "batch"}


# ---- budget arithmetic ------------------------------------------------------------------------


def test_share_is_a_fixed_proportion_of_what_is_left() -> None:
    weights = [0.2, 0.3, 0.5]
    assert share(100.0, weights, 0) == pytest.approx(20.0)
    # 20 s saved by the first section go to the others in their proportion (3:5).
    assert share(100.0, weights, 1) == pytest.approx(37.5)
    assert share(50.0, weights, 2) == pytest.approx(50.0)
    assert share(-5.0, weights, 1) == 0.0


def test_plan_size_prefers_epochs_then_seeds() -> None:
    # 2 variants, 10 s set-up and 2 s per epoch per run.
    assert plan_size(2 * 2 * (10 + 2 * 5), 2, 10.0, 2.0, max_epochs=30, min_seeds=2, max_seeds=3) == (2, 5)
    assert plan_size(3 * 2 * (10 + 2 * 30), 2, 10.0, 2.0, max_epochs=30, min_seeds=2, max_seeds=3) == (3, 30)
    assert plan_size(10_000, 2, 10.0, 2.0, max_epochs=30, min_seeds=2, max_seeds=3) == (3, 30)
    seeds, epochs = plan_size(20, 2, 10.0, 2.0, max_epochs=30, min_seeds=2, max_seeds=3)
    assert seeds == 2 and epochs < 1  # too little time: the section skips the experiment


# ---- the runner with stand-in sections ----------------------------------------------------------


def fake_section(name: str, run: Any, weight: float = 1.0) -> SimpleNamespace:
    return SimpleNamespace(NAME=name, TITLE=f"fake {name}", WEIGHT=weight, COLUMNS=[("x", "x", "num")], run=run)


def suite_args(out: Path, selected: list[str], minutes: float = 1.0) -> argparse.Namespace:
    return argparse.Namespace(out=out, minutes=minutes, dry_run=True, selected=selected, keep_work=True)


def test_runner_records_each_outcome_and_goes_on(tmp_path: Path) -> None:
    seen: list[str] = []

    def ok(ctx: SectionContext) -> None:
        ctx.ran("one row")
        ctx.row("fp32", 4, x=1.5)
        seen.append("ok")

    def broken(ctx: SectionContext) -> None:
        ctx.row("fp32", 4, x=2.0)
        raise ValueError("the kernel said no\nsecond line")

    def overrun(ctx: SectionContext) -> None:
        ctx.budget_s, ctx.grace_s = 0.0, 0.0
        time.sleep(0.01)
        ctx.check_time("the second measurement")

    def after(ctx: SectionContext) -> None:
        seen.append("after")

    sections = [fake_section("ok", ok), fake_section("broken", broken), fake_section("overrun", overrun),
                fake_section("unselected", ok), fake_section("after", after)]  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    args = suite_args(out, ["ok", "broken", "overrun", "after"])
    data_info = {"path": "x", "classes": 2, "train_images": 4, "val_images": 2, "generated": True}
    result = runner.run_suite(sections, args, torch.device("cpu"), DRY, tmp_path, data_info, tmp_path, time.monotonic())

    assert seen == ["ok", "after"]  # the suite went on after the failures
    written = json.loads((out / report.JSON_NAME).read_text())
    assert written["format"] == report.FORMAT and written["finished"]  # (pytest-qt has imported Qt here)
    status = {s["name"]: s["status"] for s in written["sections"]}
    assert status["ok"] == status["after"] == "ok"
    assert status["broken"] == "failed: ValueError: the kernel said no"
    assert status["overrun"].startswith("failed: ran over its budget")
    assert status["unselected"].startswith("skipped:")
    broken_entry = next(s for s in written["sections"] if s["name"] == "broken")
    assert broken_entry["rows"][0]["x"] == 2.0  # figures measured before the failure are kept
    assert "Traceback" in broken_entry["error"]
    row = next(s for s in written["sections"] if s["name"] == "ok")["rows"][0]
    assert ROW_KEYS <= row.keys() and row["batch"] == 4
    # Budgets: a fixed proportion of what was left; the unselected section gets none.
    assert all(s["budget_s"] > 0 for s in written["sections"] if s["name"] != "unselected")
    md = (out / report.MD_NAME).read_text()
    assert "failed: ValueError: the kernel said no" in md and "## 1. fake ok" in md
    assert result["sections"][0]["rows"][0]["x"] == 1.5


def test_a_section_is_marked_interrupted_while_it_runs(tmp_path: Path) -> None:
    """A run killed from outside leaves a report that says which section it died in."""
    statuses: list[str] = []

    def look(ctx: SectionContext) -> None:
        on_disk = json.loads((ctx.out / report.JSON_NAME).read_text())
        statuses.append(on_disk["sections"][-1]["status"])

    out = tmp_path / "out"
    out.mkdir()
    data_info = {"path": "x", "generated": True}
    runner.run_suite([fake_section("look", look)], suite_args(out, ["look"]), torch.device("cpu"), DRY, tmp_path,
                     data_info, tmp_path, time.monotonic())  # fmt: skip
    assert statuses == [runner.INTERRUPTED]


def test_budget_exceeded_is_raised_only_past_the_hard_limit() -> None:
    ctx = SectionContext(name="x", device=torch.device("cpu"), dry_run=True, sizes=DRY, data=Path("."),
                         work=Path("."), out=Path("."), machine={}, budget_s=100.0, record={}, shared={},
                         save=lambda: None)  # fmt: skip
    ctx.check_time("anything")  # well inside
    ctx.started -= 130.0  # past the budget, within budget x 1.25 + grace
    ctx.check_time("anything")
    ctx.started -= 10.0
    with pytest.raises(BudgetExceeded, match="140 s of 100 s"):
        ctx.check_time("anything")


# ---- publishing a result ------------------------------------------------------------------------


def make_result(folder: Path, dry_run: bool) -> None:
    folder.mkdir()
    result = {"format": report.FORMAT, "started": "2026-11-29T00:00:00+00:00", "seconds": 470.0,
              "dry_run": dry_run, "minutes": 8.0, "data": {"path": "imagenette"},
              "machine": {"device": "cuda", "gpu": "NVIDIA H200", "torch": "2.11.0", "cuda": "13.0",
                          "cpu": "x", "cpu_cores": 16, "python": "3.12"},
              "sections": [{"name": "recipe", "title": "Recipe", "status": "ok", "budget_s": 80.0, "seconds": 79.0,
                            "ran": ["ran it"], "rows": [{"top1_err": 0.25}], "notes": [], "figures": {},
                            "files": ["recipe-curves.png"], "columns": [["top1_err", "top-1 error", "pct"]]}]}  # fmt: skip
    (folder / report.JSON_NAME).write_text(json.dumps(result))
    (folder / "recipe-curves.png").write_bytes(b"\x89PNG fake")
    staging = folder / "staging"
    (staging / "experiments" / "lrn").mkdir(parents=True)
    (staging / "experiments" / "lrn" / "report.md").write_text("# lrn report\n")
    (staging / "experiments" / "lrn" / "evil.sh").write_text("rm -rf /\n")
    with tarfile.open(folder / ARCHIVE, "w:gz") as tar:
        tar.add(staging / "experiments", arcname="experiments")
        tar.add(staging / "experiments" / "lrn" / "report.md", arcname="../outside.md")


def test_publish_fills_the_readme_and_docs(tmp_path: Path) -> None:
    make_result(tmp_path / "result", dry_run=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\n{publish.BEGIN}\nold\n{publish.END}\n\n## Other\n")
    docs = tmp_path / "docs"
    publish.publish(tmp_path / "result", readme, docs)
    text = readme.read_text()
    assert "old" not in text and "## Other" in text
    assert "**GPU suite**" in text and "#### 1. Recipe" in text and "25.0%" in text
    assert "](../docs/experiments/gpu-suite/recipe-curves.png)" in text
    assert (docs / "gpu-suite" / "recipe-curves.png").is_file() and (docs / "gpu-suite" / "suite.json").is_file()
    assert (docs / "lrn" / "report.md").read_text() == "# lrn report\n"
    assert not (docs / "lrn" / "evil.sh").exists() and not (tmp_path / "outside.md").exists()


def test_publishing_some_sections_keeps_the_others(tmp_path: Path) -> None:
    make_result(tmp_path / "first", dry_run=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"{publish.BEGIN}\n{publish.END}\n")
    docs = tmp_path / "docs"
    publish.publish(tmp_path / "first", readme, docs)
    later = tmp_path / "later"
    later.mkdir()
    result = json.loads((tmp_path / "first" / report.JSON_NAME).read_text())
    result["started"] = "2026-12-01T00:00:00+00:00"
    result["sections"][0].update(status="skipped: not selected (--sections)", rows=[])
    (later / report.JSON_NAME).write_text(json.dumps(result))
    publish.publish(later, readme, docs)
    kept = json.loads((docs / "gpu-suite" / report.JSON_NAME).read_text())["sections"][0]
    assert kept["status"] == "ok" and kept["rows"] == [{"top1_err": 0.25}]
    assert "from the run of 2026-11-29" in readme.read_text()


def test_publish_refuses_a_dry_run(tmp_path: Path) -> None:
    make_result(tmp_path / "result", dry_run=True)
    readme = tmp_path / "README.md"
    readme.write_text(f"{publish.BEGIN}\n{publish.END}\n")
    with pytest.raises(publish.PublishError, match="dry run"):
        publish.publish(tmp_path / "result", readme, tmp_path / "docs")
    assert publish.main([str(tmp_path / "result"), "--readme", str(readme), "--docs", str(tmp_path / "d")]) == 2


def test_the_readme_has_the_markers_publish_needs() -> None:
    text = (ROOT / "benchmarks" / "README.md").read_text()
    assert text.index(publish.BEGIN) < text.index(publish.END)


# ---- the whole suite, dry -------------------------------------------------------------------------


@pytest.mark.slow
def test_dry_run_runs_every_section(tmp_path: Path) -> None:
    """python -m benchmarks.gpu_suite --dry-run, as on the device machine but on the CPU at toy size:
    every section must end "ok" with its rows, and OUT must be what the device machine can send back."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    # Scratch in /dev/shm when it has room (as on the device machine): ~0.5 GB checkpoints per engine run.
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", "--dry-run", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=570)  # fmt: skip
    result = json.loads((out / report.JSON_NAME).read_text())  # written even when a section failed
    statuses = {s["name"]: s["status"] for s in result["sections"]}
    assert statuses == dict.fromkeys(SECTION_NAMES, "ok"), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["dry_run"] is True and result["qt_imported"] is False and result["finished"]
    assert result["machine"]["device"] == "cpu" and result["data"]["generated"] is True
    for section in result["sections"]:
        assert section["ran"], section["name"]
        assert section["rows"], section["name"]
        for row in section["rows"]:
            assert ROW_KEYS <= row.keys(), (section["name"], row)
    by_name = {s["name"]: s for s in result["sections"]}
    assert {r["variant"] for r in by_name["throughput"]["rows"]} >= {"fp32", "bf16 + channels_last + torch.compile"}
    assert by_name["realdata"]["rows"][0]["ratio"] > 0
    assert by_name["towers"]["rows"][0]["equal"] is True
    assert any(r["backend"].startswith("ONNX Runtime") for r in by_name["inference"]["rows"])
    assert any(r["measurement"].startswith("file to top-5") for r in by_name["inference"]["rows"])
    recipe_rows = {r["evaluation"]: r for r in by_name["recipe"]["rows"]}
    assert 0.0 <= recipe_rows["final weights, ten crops (softmax mean)"]["top1_err"] <= 1.0
    assert [r["experiment"] for r in by_name["experiments"]["rows"]] == list(ORDER)
    assert all(r["outcome"] == "report written" for r in by_name["experiments"]["rows"])

    # What comes back from the device machine: at most 8 files, none more than 2 folders down.
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files), files
    assert (out / "recipe-curves.png").read_bytes()[:4] == b"\x89PNG"
    with tarfile.open(out / ARCHIVE) as tar:
        names = set(tar.getnames())
    for name in ORDER:
        assert f"experiments/{name}/report.json" in names and f"experiments/{name}/report.md" in names
    md = (out / report.MD_NAME).read_text()
    assert "DRY RUN" in md and all(f"| {name} | ok |" in md for name in SECTION_NAMES)

"""`alexgui` on the command line, as a user on a server runs it (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexgui import __version__
from alexgui.engine.store.checkpoint import load_checkpoint
from tests.helpers import make_dataset

TINY = ["--batch-size", "4", "--workers", "0"]


def alexgui(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "alexgui", *args], capture_output=True, text=True, timeout=timeout, env=env, **kwargs
    )


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "alexgui", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def step_lines(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [d for d in map(json.loads, lines) if d["type"] == "step"]


def wait_for(predicate, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), classes=2, train_per_class=6, val_per_class=2)


def test_version() -> None:
    out = alexgui("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"alexgui {__version__}"


@pytest.mark.parametrize(("arch", "total"), [("paper", "60,965,224"), ("torchvision", "61,100,840")])
def test_summary_ends_with_total(arch: str, total: str) -> None:
    out = alexgui("summary", "--arch", arch)
    assert out.returncode == 0, out.stderr
    assert total in out.stdout.strip().splitlines()[-1]
    assert "conv1" in out.stdout and "fc8" in out.stdout


def test_train_writes_run_and_reports(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = alexgui("train", "--data", str(dataset), "--out", str(run), "--epochs", "1", *TINY)
    assert out.returncode == 0, out.stdout + out.stderr
    # The app's log and the terminal print the same words (engine/training/narrative.py).
    assert "Pre-flight: 16 images OK, none skipped" in out.stdout
    assert "Epoch 1 of 1 done" in out.stdout and "val loss" in out.stdout
    assert "Finished at step 3" in out.stdout
    assert (run / "config.toml").is_file() and (run / "checkpoints" / "last.safetensors").is_file()
    assert [d["step"] for d in step_lines(run)] == [1, 2, 3]


def test_bad_files_are_reported_and_skipped(dataset: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_dataset(data, classes=2, train_per_class=4, val_per_class=2)
    (data / "train" / "class_0" / "notes.jpg").write_text("not really a photo")
    (data / "train" / "class_1" / "empty.png").write_bytes(b"")
    out = alexgui("train", "--data", str(data), "--out", str(tmp_path / "run"), "--max-steps", "1", *TINY)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 skipped" in out.stdout
    assert "notes.jpg" in out.stdout and "empty.png" in out.stdout
    report = json.loads((tmp_path / "run" / "preflight.json").read_text())
    assert {Path(s["path"]).name for s in report["skipped"]} == {"notes.jpg", "empty.png"}


@pytest.mark.parametrize("problem", ["empty", "one-class", "missing"])
def test_unusable_dataset_fails_clearly(problem: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    if problem == "empty":
        data.mkdir()
    elif problem == "one-class":
        make_dataset(data, classes=1)
        for split in ("train", "val"):
            (data / split / "class_1").mkdir()  # an empty second class folder
    out = alexgui("train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY)
    assert out.returncode != 0
    assert str(data) in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_unwritable_output_fails_clearly(dataset: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run directory's parent should be")
    out = alexgui("train", "--data", str(dataset), "--out", str(blocker / "run"), *TINY)
    assert out.returncode == 2
    assert str(blocker) in out.stderr and "Traceback" not in out.stderr


def test_interrupt_then_resume_continues_the_curve(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = start("train", "--data", str(dataset), "--out", str(run), "--epochs", "50", *TINY)
    try:
        wait_for(lambda: (run / "metrics.jsonl").exists() and len(step_lines(run)) >= 2)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
        proc.stdout.close()
    assert proc.returncode == 130, output
    assert "--resume" in output
    stopped_at = load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"]
    assert stopped_at == step_lines(run)[-1]["step"]

    out = alexgui("train", "--out", str(run), "--resume", "--max-steps", str(stopped_at + 2))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"from step {stopped_at}" in out.stdout
    steps = [d["step"] for d in step_lines(run)]
    assert steps == list(range(1, stopped_at + 3))


def test_killed_hard_resumes_from_last_checkpoint(dataset: Path, tmp_path: Path) -> None:
    """SIGKILL at any moment: the last checkpoint loads and --resume carries on from it."""
    run = tmp_path / "run"
    proc = start("train", "--data", str(dataset), "--out", str(run), "--epochs", "50", *TINY)
    try:
        wait_for(lambda: (run / "metrics.jsonl").exists() and len(step_lines(run)) >= 4)  # past epoch 1's checkpoint
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.stdout.close()
    saved = load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"]
    assert saved >= 3
    out = alexgui("train", "--out", str(run), "--resume", "--max-steps", str(saved + 1))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"from step {saved}" in out.stdout

"""A run folder is alexgui's, provably, and has one writer: the marker, old runs, foreign folders left
byte for byte alone, the lock (within a process and between real processes), racing creators, and the
leftovers of killed writers swept by the next writer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alexgui.cli import main
from alexgui.config import RunConfig
from alexgui.engine.events import StepDone
from alexgui.engine.store.checkpoint import save_checkpoint
from alexgui.engine.store.lock import LOCK_NAME, FolderLock, lock_holder
from alexgui.engine.store.metrics_log import MetricsFollower
from alexgui.engine.store.ownership import MARKER_NAME, Ownership, ownership
from alexgui.engine.store.rundir import RunDir, RunDirError
from alexgui.engine.training.checkpoints import CHECKPOINT_FORMAT

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def small_config() -> RunConfig:
    cfg = RunConfig()
    cfg.train.epochs = 1
    return cfg


def foreign_run(folder: Path) -> dict[str, bytes]:
    """Another tool's run: a config.toml and a metrics.jsonl whose last line is unfinished."""
    folder.mkdir(parents=True)
    files = {
        "config.toml": b'[experiment]\nname = "resnet"\nlr = 0.1\n',
        "metrics.jsonl": b'{"epoch": 1, "loss": 2.5}\n{"epoch": 2, "lo',
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


# -- the marker and what counts as alexgui's ------------------------------------------------------


def test_create_writes_the_marker_and_holds_the_lock(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    marker = json.loads((run.path / MARKER_NAME).read_text(encoding="utf-8"))
    assert marker["format"] == "alexgui-run" and marker["version"] == 1
    assert ownership(run.path) is Ownership.MARKED
    assert run.is_writer and lock_holder(run.path) == os.getpid()
    run.close()
    assert not run.is_writer and lock_holder(run.path) is None


def test_ownership_of_empty_foreign_and_old_folders(tmp_path: Path) -> None:
    assert ownership(tmp_path / "missing") is Ownership.EMPTY
    only_lock = tmp_path / "only-lock"
    only_lock.mkdir()
    (only_lock / LOCK_NAME).write_text("123\n")  # a creator killed before its marker
    assert ownership(only_lock) is Ownership.EMPTY
    foreign_run(tmp_path / "foreign")
    assert ownership(tmp_path / "foreign") is Ownership.FOREIGN

    # Runs made before the marker existed: known by their checkpoint, their log, or their config.toml.
    by_checkpoint = tmp_path / "old-ckpt"
    (by_checkpoint / "checkpoints").mkdir(parents=True)
    (by_checkpoint / "config.toml").write_text("[train]\nepochs = 3\n")
    save_checkpoint(by_checkpoint / "checkpoints" / "last.safetensors", {"x": torch.zeros(1)}, {"format": CHECKPOINT_FORMAT})
    by_log = tmp_path / "old-log"
    by_log.mkdir()
    (by_log / "config.toml").write_text("[train]\nepochs = 3\n")
    (by_log / "metrics.jsonl").write_text('{"type": "preflight", "step": 0, "epoch": 0, "images_ok": 3, "skipped": []}\n')
    by_config = tmp_path / "old-config"
    by_config.mkdir()
    (by_config / "config.toml").write_text(small_config().to_toml())
    for folder in (by_checkpoint, by_log, by_config):
        assert ownership(folder) is Ownership.LEGACY, folder

    # The same names with other contents prove nothing.
    lookalike = tmp_path / "lookalike"
    (lookalike / "checkpoints").mkdir(parents=True)
    (lookalike / "config.toml").write_text("[train]\nepochs = 3\n")
    save_checkpoint(lookalike / "checkpoints" / "last.safetensors", {"x": torch.zeros(1)}, {"format": "other/1"})
    (lookalike / "metrics.jsonl").write_text('{"step": 0, "type": "step", "epoch": 0}\n')
    assert ownership(lookalike) is Ownership.FOREIGN


def test_an_old_run_gets_the_marker_when_it_is_next_written(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.toml").write_text(small_config().to_toml())
    (old / "metrics.jsonl").write_text('{"type": "preflight", "step": 0, "epoch": 0, "images_ok": 3, "skipped": []}\n')
    RunDir.open(old)  # reading marks nothing
    assert not (old / MARKER_NAME).exists()
    run = RunDir.open_for_writing(old)
    assert ownership(old) is Ownership.MARKED and run.is_writer


@pytest.mark.parametrize("flags", [[], ["--resume"], ["--restart"]])
def test_a_foreign_folder_is_never_written(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    folder = tmp_path / "theirs"
    before = foreign_run(folder)
    assert main(["train", "--out", str(folder), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(folder) in err and "not an alexgui run" in err
    assert "config.toml, metrics.jsonl" in err  # what the folder seems to be
    assert snapshot(folder) == before  # the same files, byte for byte (no lock file, no marker either)


def test_the_engine_refuses_a_foreign_folder_too(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    before = foreign_run(folder)
    for attempt in (
        lambda: RunDir.create(folder, small_config()),
        lambda: RunDir.create(folder, small_config(), exist_ok=True),
        lambda: RunDir.open_for_writing(folder),
    ):
        with pytest.raises(RunDirError, match="not an alexgui run"):
            attempt()
    run = RunDir(folder)
    with pytest.raises(RunDirError, match="not an alexgui run"):
        run.claim()
    assert snapshot(folder) == before


# -- one writer -----------------------------------------------------------------------------------


def test_a_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    with pytest.raises(RunDirError, match="this process is already training this run"):
        RunDir.open_for_writing(run.path)
    run.claim()  # the holder itself: nothing happens
    watcher = RunDir.open(run.path)  # readers take no lock, and a follower reads on
    run.append(StepDone(1, 0, batch=1, batches=3, loss=1.0, top1_err=0.5, top5_err=0.0, lr=0.01, images_per_s=1.0))
    assert [e.step for e in MetricsFollower(watcher.metrics_path).poll()] == [1]
    with pytest.raises(RunDirError, match="this process is training this run"):
        watcher.append(StepDone(2, 0, batch=2, batches=3, loss=1.0, top1_err=0.5, top5_err=0.0, lr=0.01, images_per_s=1.0))
    run.close()
    assert RunDir.open_for_writing(run.path).is_writer


HOLD = """
import sys, time
from alexgui.engine.store.rundir import RunDir
run = RunDir.open_for_writing(sys.argv[1])
print("holding", flush=True)
time.sleep(600)
"""


def test_another_process_holding_the_run_is_named_and_its_death_frees_the_run(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    run.close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run.path)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with pytest.raises(RunDirError, match=f"process {holder.pid} is already training this run") as info:
            RunDir.open_for_writing(run.path)
        assert time.monotonic() - started < 5  # refused at once, not after waiting
        assert f"kill {holder.pid}" in str(info.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)
    # The kernel released the lock of the killed process: no stale lock to clean up by hand.
    assert RunDir.open_for_writing(run.path).is_writer


CREATE = """
import sys, time
from alexgui.config import RunConfig
from alexgui.engine.store.rundir import RunDir, RunDirError
start = float(sys.argv[2])
while time.time() < start:
    pass
try:
    run = RunDir.create(sys.argv[1], RunConfig())
except RunDirError as e:
    print("lost", e, flush=True)
else:
    print("won", flush=True)
    time.sleep(0.5)  # a winner keeps its lock a moment, as a training would
"""


@pytest.mark.skipif(os.name == "nt", reason="flock semantics are tested on POSIX")
def test_exactly_one_of_two_racing_creators_wins(tmp_path: Path) -> None:
    for attempt in range(3):
        target = tmp_path / f"race{attempt}" / "run"
        start = time.time() + 4  # both interpreters are up by then and spin until the same instant
        procs = [
            subprocess.Popen([sys.executable, "-c", CREATE, str(target), str(start)], env=ENV, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120)[0].strip() for p in procs]
        assert sorted(o.split()[0] for o in outs) == ["lost", "won"], outs
        assert RunDir.open(target).config() == RunConfig()


def test_a_lock_file_names_its_holder_and_is_not_stale_after_release(tmp_path: Path) -> None:
    lock = FolderLock(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert lock_holder(tmp_path) == os.getpid()
    lock.release()
    assert lock_holder(tmp_path) is None
    FolderLock(tmp_path).release()  # free again


# -- leftovers of killed writers ------------------------------------------------------------------


def test_temporaries_of_killed_writers_are_swept_when_the_run_is_next_written(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    run.close()
    # A killed writer's checkpoint temporary, named with a process id that is alive now (pid reuse):
    # only the lock tells it is stale.
    live_pid = os.getppid()
    debris = [
        run.checkpoints_dir / f".last.safetensors.tmp-{live_pid}-0badcafe",
        run.path / f".config.toml.tmp-{live_pid}-deadbeef",
    ]
    for file in debris:
        file.write_bytes(b"half a checkpoint")
    keep = run.checkpoints_dir / "notes.txt"
    keep.write_text("mine")
    RunDir.open(run.path)  # a reader sweeps nothing
    assert all(f.exists() for f in debris)
    resumed = RunDir.open_for_writing(run.path)
    assert not any(f.exists() for f in debris) and keep.exists()
    resumed.close()


def test_restart_clears_only_the_runs_own_files(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    save_checkpoint(run.last_checkpoint, {"x": torch.zeros(1)}, {"format": CHECKPOINT_FORMAT})
    run.append(StepDone(1, 0, batch=1, batches=3, loss=1.0, top1_err=0.5, top5_err=0.0, lr=0.01, images_per_s=1.0))
    run.write_preflight({"skipped": []})
    (run.path / "my-notes.txt").write_text("keep me")
    run.restart()
    assert not run.last_checkpoint.exists() and not run.metrics_path.exists() and not run.preflight_path.exists()
    assert (run.path / "my-notes.txt").read_text() == "keep me" and run.config_path.exists()
    assert ownership(run.path) is Ownership.MARKED


# -- experiments: one at a time per folder, and never into another tool's run ----------------------


def test_an_experiment_refuses_a_busy_folder_and_a_foreign_run(tmp_path: Path) -> None:
    from alexgui.engine.experiments import ExperimentError, ExperimentOptions, run_experiment

    out = tmp_path / "exp"
    out.mkdir()
    holder = FolderLock(out)
    with pytest.raises(ExperimentError, match="this process is already running an experiment"):
        list(run_experiment("lrn", out, ExperimentOptions()))
    holder.release()
    before = foreign_run(out / "lrn-seed0")
    with pytest.raises(ExperimentError, match="is not an alexgui run"):
        list(run_experiment("lrn", out, ExperimentOptions()))
    assert snapshot(out / "lrn-seed0") == before
    assert lock_holder(out) is None  # the experiment's own lock went with it


def test_create_checks_the_settings_before_making_anything(tmp_path: Path) -> None:
    from alexgui.config import ConfigError

    cfg = small_config()
    cfg.train.batch_size = 0  # set in code (the app's form), not read from a file
    with pytest.raises(ConfigError, match="batch_size: 0 is out of range"):
        RunDir.create(tmp_path / "r", cfg)
    assert not (tmp_path / "r").exists()

"""Writers that never touch what is not theirs, and locks that do not refuse a claimer for no reason
(review of issue 12): a reader appending to another tool's log, the locked sweep and temporaries of
writers that take no lock, lock_holder's look at the lock, a lock outliving its dead holder in a
forked child, and the one pid check and one busy-lock message."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alexgui.config import RunConfig
from alexgui.engine.events import Failed
from alexgui.engine.inference import index_files
from alexgui.engine.store import atomic
from alexgui.engine.store.lock import LOCK_NAME, FolderBusyError, FolderLock, lock_holder
from alexgui.engine.store.rundir import RunDir, RunDirError

POSIX = pytest.mark.skipif(os.name != "posix", reason="flock and os.kill(pid, 0)")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- 3: a reader never writes into a folder that is not alexgui's ---------------------------------


def test_a_reader_never_appends_to_a_foreign_log(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "config.toml").write_bytes(b"")  # loads as alexgui's defaults, proves nothing
    (folder / "metrics.jsonl").write_bytes(b'{"epoch": 1, "loss": 2.5}\n{"epoch": 2, "lo')
    before = _snapshot(folder)
    run = RunDir.open(folder)
    with pytest.raises(RunDirError, match="not an alexgui run"):
        run.claim()
    with pytest.raises(RunDirError, match="not written: .* is not an alexgui run"):
        run.append(Failed(0, 0, message="the trainer stopped"))
    assert _snapshot(folder) == before


def test_a_reader_still_records_a_failure_in_an_unclaimed_alexgui_run(tmp_path: Path) -> None:
    RunDir.create(tmp_path / "r", RunConfig()).close()
    reader = RunDir.open(tmp_path / "r")
    reader.append(Failed(0, 0, message="the trainer stopped"))
    reader.close()
    assert [e.type for e in reader.events()[0]] == ["failed"]


# -- 5: the locked sweep spares writers that take no lock -----------------------------------------


@POSIX
def test_the_resume_sweep_keeps_live_temporaries_of_writers_without_the_lock(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", RunConfig())
    run.close()
    live, dead = os.getppid(), _dead_pid()  # live: another process, e.g. `alexgui export --out RUN/model.onnx`
    kept = [
        run.path / f".model.onnx.tmp-{live}-0badcafe",
        run.path / f".index.json.tmp-{os.getpid()}-0badcafe",  # another thread of this process
        run.checkpoints_dir / f".model.onnx.tmp-{live}-0badcafe",
    ]
    swept = [
        run.path / f".config.toml.tmp-{live}-deadbeef",  # the run's own files: only the lock holder writes them
        run.path / f".preflight.json.tmp-{live}-deadbeef",
        run.path / f".alexgui-run.json.tmp-{live}-deadbeef",
        run.checkpoints_dir / f".last.safetensors.tmp-{live}-deadbeef",
        run.checkpoints_dir / f".best.safetensors.tmp-{os.getpid()}-deadbeef",
        run.path / f".model.onnx.tmp-{dead}-deadbeef",  # a writer that has ended
    ]
    for file in kept + swept:
        file.write_bytes(b"half written")
    resumed = RunDir.open_for_writing(run.path)
    resumed.close()
    assert [f.name for f in kept if not f.exists()] == []
    assert [f.name for f in swept if f.exists()] == []


# -- 7: lock_holder's look at the lock does not refuse a real claimer ----------------------------


@POSIX
def test_a_claimer_is_not_refused_by_a_look_at_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    from alexgui.engine.store import lock as lock_module

    monkeypatch.setattr(lock_module, "RETRY_S", 1.0)  # the timer below may run late on a busy machine
    (tmp_path / LOCK_NAME).write_text(f"{os.getppid()}\n")  # a former holder's pid, alive
    look = os.open(tmp_path / LOCK_NAME, os.O_RDWR)
    fcntl.flock(look, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what lock_holder does for an instant
    threading.Timer(0.02, os.close, (look,)).start()
    lock = FolderLock(tmp_path)
    assert lock.held and lock_holder(tmp_path) == os.getpid()
    lock.release()


def test_a_held_lock_is_still_refused(tmp_path: Path) -> None:
    held = FolderLock(tmp_path)
    start = time.monotonic()
    with pytest.raises(FolderBusyError):
        FolderLock(tmp_path, on_wait=pytest.fail)  # this process is alive: no waiting for it
    assert time.monotonic() - start < 2
    held.release()


# -- 8: a lock that outlives its dead holder in a forked child ------------------------------------

_CHILD_HOLDS_THE_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


@POSIX
def test_a_lock_held_on_by_a_child_of_a_dead_holder_is_waited_for(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / LOCK_NAME).write_text(f"{_dead_pid()}\n")  # the killed trainer's pid
    child = subprocess.Popen(  # its DataLoader worker, which shares the lock, exits a moment later
        [sys.executable, "-c", _CHILD_HOLDS_THE_LOCK, str(tmp_path / LOCK_NAME), "1.0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "holding"
        lock = FolderLock(tmp_path)
        said = capfd.readouterr().err.splitlines()
        assert lock.held and len(said) == 1 and "waiting for process" in said[0] and "has ended" in said[0]
        lock.release()
    finally:
        child.kill()
        child.communicate()  # waits, and closes its stdout


@POSIX
def test_the_wait_for_a_dead_holder_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alexgui.engine.store import lock as lock_module

    monkeypatch.setattr(lock_module, "DEAD_HOLDER_WAIT_S", 0.3)
    dead = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(f"{dead}\n")
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD_HOLDS_THE_LOCK, str(tmp_path / LOCK_NAME), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "holding"
        with pytest.raises(FolderBusyError) as info:
            FolderLock(tmp_path, on_wait=lambda message: None)
        assert info.value.holder == dead
    finally:
        child.kill()
        child.communicate()  # waits, and closes its stdout


# -- 12: one pid check, one busy-lock message -----------------------------------------------------


def test_one_process_check_for_temporaries_and_feature_files() -> None:
    assert not hasattr(index_files, "_process_alive") and not hasattr(atomic, "_process_alive")
    assert index_files.process_alive is atomic.process_alive
    assert atomic.process_alive(os.getpid())


def test_an_experiment_and_a_run_name_a_busy_folder_the_same_way(tmp_path: Path) -> None:
    from alexgui.engine.experiments import ExperimentError, ExperimentOptions, run_experiment

    out = tmp_path / "exp"
    out.mkdir()
    holder = FolderLock(out)
    with pytest.raises(ExperimentError, match="^.*exp: this process is already running an experiment in this folder$"):
        list(run_experiment("lrn", out, ExperimentOptions()))
    holder.release()
    run = RunDir.create(tmp_path / "r", RunConfig())
    with pytest.raises(RunDirError, match="r: this process is already training this run$"):
        RunDir.open_for_writing(run.path)
    run.close()

"""Run directories: creation rules, the metrics log (NaN, partial lines, another process), followers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import alexgui.engine.store.rundir as rundir_module
from alexgui.config import RunConfig
from alexgui.engine.events import (
    CheckpointSaved,
    EpochDone,
    Event,
    Failed,
    Finished,
    LrDropped,
    Paused,
    PreflightReport,
    Progress,
    Resumed,
    RunStarted,
    StepDone,
    Stopped,
)
from alexgui.engine.store.atomic import atomic_write_bytes
from alexgui.engine.store.metrics_log import MetricsFollower, encode_event, read_events
from alexgui.engine.store.rundir import RunDir, RunDirError, find_run_dirs, is_run_dir

REPO = Path(__file__).resolve().parents[1]


def small_config() -> RunConfig:
    cfg = RunConfig()
    cfg.train.epochs = 3
    cfg.model.arch = "torchvision"
    return cfg


def step(i: int, loss: float = 2.5) -> StepDone:
    return StepDone(
        i, 0, batch=i, batches=100, loss=loss, top1_err=0.5, top5_err=0.1, lr=0.01, images_per_s=123.0, time=1000.0 + i
    )


def all_kinds_of_events() -> list[Event]:
    return [
        RunStarted(0, 0, device="cpu", arch="paper", num_classes=2, class_names=["nan", "inf"], train_images=10,
                   val_images=2, steps_per_epoch=5, epochs=2, time=1.0),
        PreflightReport(0, 0, images_ok=10, skipped=[{"path": "x.jpg", "reason": "not an image"}], time=2.0),
        Progress(0, 0, stage="cache", done=3, total=10, time=3.0),
        step(1, loss=float("nan")),
        step(2, loss=float("inf")),
        step(3, loss=-math.inf),
        StepDone(4, 0, batch=4, batches=100, loss=1.0, top1_err=0.5, top5_err=0.1, lr=0.01, images_per_s=1.0,
                 tower_ms=[float("nan"), 2.5], cross_bytes=1024, time=12.0),
        EpochDone(5, 0, train_loss=1.0, train_top1_err=0.5, train_top5_err=0.0, val_loss=None, val_top1_err=None,
                  val_top5_err=float("nan"), lr=0.01, seconds=2.5, time=4.0),
        LrDropped(5, 1, old_lr=0.01, new_lr=0.001, reason="plateau", time=5.0),
        CheckpointSaved(5, 1, path="checkpoints/last.safetensors", kind="last", time=6.0),
        Paused(5, 1, time=7.0),
        Resumed(5, 1, time=8.0),
        Stopped(5, 1, checkpoint=None, time=9.0),
        Failed(5, 1, message="out of memory\nsecond line", checkpoint="c.safetensors", time=10.0),
        Finished(6, 1, reason="epochs", time=11.0),
    ]


def assert_same_events(a: list[Event], b: list[Event]) -> None:
    # NaN != NaN, so compare the encoded lines, which spell NaN the same way every time.
    assert [encode_event(e) for e in a] == [encode_event(e) for e in b]
    assert [type(e) for e in a] == [type(e) for e in b]


# -- creating and opening --------------------------------------------------------------------------


def test_create_writes_config_and_layout(tmp_path: Path) -> None:
    cfg = small_config()
    run = RunDir.create(tmp_path / "runs" / "r1", cfg)
    assert run.config_path == run.path / "config.toml"
    assert run.metrics_path == run.path / "metrics.jsonl"
    assert run.checkpoints_dir.is_dir()
    assert run.last_checkpoint == run.checkpoints_dir / "last.safetensors"
    assert run.best_checkpoint == run.checkpoints_dir / "best.safetensors"
    assert run.preflight_path == run.path / "preflight.json"
    assert run.config() == cfg
    assert RunDir.open(run.path).config() == cfg
    assert is_run_dir(run.path)


def test_create_refuses_an_existing_run_unless_reopening(tmp_path: Path) -> None:
    path = tmp_path / "r1"
    RunDir.create(path, small_config())
    with pytest.raises(RunDirError, match="already an alexgui run") as info:
        RunDir.create(path, small_config())
    assert str(path) in str(info.value)
    cfg = small_config()
    cfg.train.epochs = 10
    run = RunDir.create(path, cfg, exist_ok=True)
    assert run.config().train.epochs == 10


def test_create_accepts_an_empty_folder_and_refuses_a_used_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDir.create(empty, small_config())
    used = tmp_path / "photos"
    used.mkdir()
    (used / "holiday.jpg").write_bytes(b"\xff\xd8")
    for exist_ok in (False, True):
        with pytest.raises(RunDirError, match="not empty and is not an alexgui run") as info:
            RunDir.create(used, small_config(), exist_ok=exist_ok)
        assert str(used) in str(info.value)
    assert [p.name for p in used.iterdir()] == ["holiday.jpg"]


def test_create_refuses_to_reuse_a_run_with_a_broken_config(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    run.config_path.write_text("[train]\nepochs = 'many'\n", encoding="utf-8")
    with pytest.raises(RunDirError, match="config.toml"):
        RunDir.create(run.path, small_config(), exist_ok=True)


def test_create_where_a_file_is_in_the_way(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(RunDirError, match="is a file") as info:
        RunDir.create(a_file, small_config())
    assert str(a_file) in str(info.value)
    with pytest.raises(RunDirError, match="cannot create the run folder") as info:
        RunDir.create(a_file / "run", small_config())
    assert str(a_file / "run") in str(info.value)


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_create_in_a_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(RunDirError, match="cannot create") as info:
            RunDir.create(locked / "run", small_config())
        assert str(locked / "run") in str(info.value)
    finally:
        locked.chmod(0o700)


def test_open_errors_name_the_folder_or_file(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no such folder"):
        RunDir.open(tmp_path / "nope")
    a_file = tmp_path / "f.txt"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(RunDirError, match="not a folder"):
        RunDir.open(a_file)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RunDirError, match="config.toml: missing") as info:
        RunDir.open(plain)
    assert str(plain / "config.toml") in str(info.value)
    run = RunDir.create(tmp_path / "run", small_config())
    run.config_path.write_text("this is [not toml", encoding="utf-8")
    with pytest.raises(RunDirError, match="not valid TOML") as info:
        RunDir.open(run.path)
    assert str(run.config_path) in str(info.value)
    run.config_path.write_text("[train]\nepochz = 3\n", encoding="utf-8")
    with pytest.raises(RunDirError, match="unknown setting"):
        RunDir.open(run.path)


def test_preflight_report_is_written_as_json(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    report = {"images_ok": 3, "skipped": [{"path": "ä.jpg", "reason": "truncated"}]}
    run.write_preflight(report)
    assert json.loads(run.preflight_path.read_text(encoding="utf-8")) == report


def test_find_run_dirs(tmp_path: Path) -> None:
    a = RunDir.create(tmp_path / "a", small_config()).path
    b = RunDir.create(tmp_path / "group" / "b", small_config()).path
    RunDir.create(tmp_path / ".hidden" / "c", small_config())
    RunDir.create(tmp_path / "deep" / "1" / "2" / "3" / "4" / "d", small_config())
    RunDir.create(a / "checkpoints" / "nested", small_config())  # inside a run: not looked at
    other = tmp_path / "other-project"
    other.mkdir()
    (other / "config.toml").write_text("[tool]\nx = 1\n", encoding="utf-8")
    assert find_run_dirs(tmp_path) == [a, b]
    assert find_run_dirs(a) == [a]
    assert find_run_dirs(tmp_path / "missing") == []


# -- the metrics log ---------------------------------------------------------------------------------


def test_append_and_read_round_trip_including_nan(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    events = all_kinds_of_events()
    for e in events:
        run.append(e)
    run.close()
    read, problems = read_events(run.metrics_path)
    assert problems == []
    assert_same_events(events, read)
    assert math.isnan(read[3].loss) and read[4].loss == math.inf and read[5].loss == -math.inf
    assert math.isnan(read[6].tower_ms[0]) and read[6].tower_ms[1] == 2.5
    assert read[7].val_loss is None and math.isnan(read[7].val_top5_err)
    assert read[0].class_names == ["nan", "inf"]  # strings in string fields stay strings
    # Every line is strict JSON (no bare NaN), one object per line.
    for line in run.metrics_path.read_text(encoding="utf-8").splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert_same_events(run.events()[0], read)


def test_read_events_reports_bad_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    good = [step(1), step(2), step(3)]
    lines = [
        encode_event(good[0]),
        b"this is not json\n",
        b"[1, 2]\n",
        b'{"type": "teleported", "step": 1, "epoch": 0}\n',
        b'{"type": "step", "step": 1}\n',
        b"\n",
        b"\xff\xfe\n",
        encode_event(good[1]),
        encode_event(good[2]),
    ]
    path.write_bytes(b"".join(lines))
    events, problems = read_events(path)
    assert_same_events(good, events)
    assert problems[0] == f"{path} line 2: not JSON"
    assert problems[1] == f"{path} line 3: not a JSON object"
    assert problems[2].startswith(f"{path} line 4: not an alexgui event")
    assert problems[3].startswith(f"{path} line 5: step event is missing fields")
    assert problems[4] == f"{path} line 7: not JSON"
    assert len(problems) == 5


def test_read_events_of_a_missing_log_or_a_run_folder(tmp_path: Path) -> None:
    assert read_events(tmp_path / "metrics.jsonl") == ([], [])
    run = RunDir.create(tmp_path / "r", small_config())
    run.append(step(1))
    events, problems = read_events(run.path)
    assert len(events) == 1 and problems == []


def test_partial_last_line_is_ignored_and_cut_by_the_next_writer(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    run.append(step(1))
    run.append(step(2))
    run.close()
    whole = encode_event(step(3))
    with open(run.metrics_path, "ab") as f:  # what a writer killed mid-line leaves behind
        f.write(whole[:25])
    events, problems = read_events(run.metrics_path)
    assert [e.step for e in events] == [1, 2] and problems == []

    resumed = RunDir.open(run.path)  # opening to read must not touch the file
    assert run.metrics_path.read_bytes().endswith(whole[:25])
    resumed.append(step(4))
    resumed.close()
    events, problems = read_events(run.metrics_path)
    assert [e.step for e in events] == [1, 2, 4] and problems == []
    assert run.metrics_path.read_bytes().endswith(b"\n")


def test_a_log_that_is_one_partial_line_is_cut_to_nothing(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    run.metrics_path.write_bytes(b'{"type": "st')
    run.append(step(7))
    run.close()
    assert run.metrics_path.read_bytes() == encode_event(step(7))


def test_each_line_is_one_write_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    run = RunDir.create(tmp_path / "r", small_config())
    monkeypatch.setattr(rundir_module.os, "write", spy)
    run.append(step(1))
    run.append(step(2))
    run.close()
    assert writes == [encode_event(step(1)), encode_event(step(2))]


def test_fsync_is_batched_for_steps_and_immediate_for_important_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rundir_module, "FSYNC_EVERY_SECONDS", 1e9)
    run = RunDir.create(tmp_path / "r", small_config())
    run.append(step(0))  # creating the log syncs its folder; count from here
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(rundir_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    for i in range(1, rundir_module.FSYNC_EVERY_LINES * 3):
        run.append(step(i))
    assert len(synced) == 3
    run.append(CheckpointSaved(1, 0, path="x", kind="last"))
    assert len(synced) == 4
    run.append(step(0))
    run.close()
    assert len(synced) == 5


def test_append_after_close_reopens(tmp_path: Path) -> None:
    with RunDir.create(tmp_path / "r", small_config()) as run:
        run.append(step(1))
    run.append(step(2))
    run.close()
    assert [e.step for e in run.events()[0]] == [1, 2]


# -- following a log ---------------------------------------------------------------------------------


def test_follower_waits_for_the_file_and_for_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    follower = MetricsFollower(path)
    assert follower.poll() == []
    line = encode_event(step(1))
    with open(path, "ab", buffering=0) as f:
        f.write(line[:10])
        assert follower.poll() == []
        f.write(line[10:-1])
        assert follower.poll() == []
        f.write(b"\n" + encode_event(step(2))[:5])
        assert [e.step for e in follower.poll()] == [1]
        f.write(encode_event(step(2))[5:])
        assert [e.step for e in follower.poll()] == [2]
    assert follower.poll() == []
    assert follower.problems == [] and follower.restarts == 0


def test_follower_restarts_after_truncation_replacement_or_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(encode_event(step(i)) for i in range(5)))
    follower = MetricsFollower(path)
    assert [e.step for e in follower.poll()] == [0, 1, 2, 3, 4]

    path.write_bytes(b"".join(encode_event(step(i)) for i in (10, 11)))  # truncated and rewritten, shorter
    assert [e.step for e in follower.poll()] == [10, 11]
    assert follower.restarts == 1

    atomic_write_bytes(path, b"".join(encode_event(step(i)) for i in range(20, 30)))  # replaced, longer
    assert [e.step for e in follower.poll()] == list(range(20, 30))
    assert follower.restarts == 2

    with open(path, "r+b") as f:  # rewritten in place, same inode, longer than what was read
        f.write(b"".join(encode_event(step(i, loss=9.0)) for i in range(40, 52)))
    assert [e.step for e in follower.poll()] == list(range(40, 52))
    assert follower.restarts == 3

    path.unlink()
    assert follower.poll() == []
    path.write_bytes(encode_event(step(60)))
    assert [e.step for e in follower.poll()] == [60]
    assert follower.problems == []


def test_follower_forgets_a_partial_line_that_the_next_writer_cut(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    run.append(step(1))
    run.close()
    with open(run.metrics_path, "ab") as f:
        f.write(encode_event(step(2))[:30])  # the writer dies here
    follower = MetricsFollower(run.metrics_path)
    assert [e.step for e in follower.poll()] == [1]
    resumed = RunDir.open(run.path)
    for i in (3, 4, 5):
        resumed.append(step(i))
    resumed.close()
    assert [e.step for e in follower.poll()] == [3, 4, 5]
    assert follower.problems == []


WRITER = """
import sys, time
from alexgui.engine.events import StepDone
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.store.metrics_log import encode_event
run = RunDir.open(sys.argv[1])
n = int(sys.argv[2])
for i in range(n):
    event = StepDone(i, 0, batch=i, batches=n, loss=float("nan") if i == 3 else 1.0 / (i + 1),
                     top1_err=0.5, top5_err=0.1, lr=0.01, images_per_s=10.0)
    if i % 2:
        run.append(event)
    else:
        # A line in two writes with a pause between: followers must wait for its end.
        line = encode_event(event)
        with open(run.metrics_path, "ab", buffering=0) as f:
            f.write(line[:17])
            time.sleep(0.004)
            f.write(line[17:])
    time.sleep(0.002)
run.close()
"""


def test_follower_sees_lines_from_another_process_and_never_a_partial_one(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", small_config())
    run.close()  # this process only reads: the other one writes
    n = 60
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    follower = MetricsFollower(run.metrics_path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run.path), str(n)], env=env, cwd=REPO)
    seen: list[int] = []
    deadline = time.monotonic() + 120
    try:
        while len(seen) < n and time.monotonic() < deadline:
            for event in follower.poll():
                assert isinstance(event, StepDone)
                seen.append(event.step)
            time.sleep(0.001)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert seen == list(range(n))
    assert follower.problems == []
    events, problems = read_events(run.metrics_path)
    assert problems == [] and math.isnan(events[3].loss)


def test_create_reports_a_folder_that_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(rundir_module, "atomic_write_text", refuse)
    with pytest.raises(RunDirError, match="not writable \\(Permission denied\\)") as info:
        RunDir.create(tmp_path / "r", small_config())
    assert str(tmp_path / "r") in str(info.value)


def test_encoded_line_is_the_json_of_to_dict() -> None:
    def is_finite(e: Event) -> bool:
        text = json.dumps(e.to_dict())
        return "NaN" not in text and "Infinity" not in text

    finite = [e for e in all_kinds_of_events() if is_finite(e)]
    assert len(finite) == 10
    for event in finite:
        assert json.loads(encode_event(event)) == event.to_dict()

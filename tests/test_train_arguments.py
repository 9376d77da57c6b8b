"""`alexgui train` and `alexgui experiment` check every argument before any work, and resuming says
what it will do: nothing past --max-steps, no silent restart when the checkpoints are gone (--restart),
no config.toml rewritten by a refused resume, named fields for crafted checkpoints, one writer."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexgui.cli import main
from alexgui.commands.progress import TrainPrinter
from alexgui.config import ConfigError, RunConfig
from alexgui.engine.events import Failed, Finished, RunStarted, StepDone, Stopped
from alexgui.engine.store.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from alexgui.engine.store.metrics_log import read_events
from alexgui.engine.store.ownership import MARKER_NAME, Ownership, ownership
from alexgui.engine.store.rundir import RunDir, RunDirError
from alexgui.engine.training.checkpoints import load_resume_checkpoint
from alexgui.engine.training.control import TrainControl
from alexgui.engine.training.loop import train
from tests.helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]

# Small enough that a step takes a fraction of a second on one CPU thread.
TINY_TOML = """[data]
resize = 72
crop = 63
workers = 0

[train]
device = "cpu"
batch_size = 2
epochs = 3
checkpoint_minutes = 0.0
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), classes=2, train_per_class=3, val_per_class=1)


@pytest.fixture(scope="module")
def tiny_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY_TOML, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dataset: Path, tiny_toml: Path) -> Path:
    """A run stopped by --max-steps 2 (copied by each test that changes it)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--out", str(run), "--config", str(tiny_toml), "--data", str(dataset), "--max-steps", "2"]) == 0
    return run


def copy_run(trained: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(trained, target)
    return target


def steps_logged(run: Path) -> list[int]:
    events, problems = read_events(run / "metrics.jsonl")
    assert problems == []
    return [e.step for e in events if isinstance(e, StepDone)]


# -- every bad argument: exit 2, one line naming it, no folder --------------------------------------

BAD_TRAIN = [
    (["--batch-size", "0"], "--batch-size"),
    (["--log-every", "0"], "--log-every"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--dropout", "2"], "--dropout"),
    (["--max-steps", "-5"], "--max-steps"),
    (["--epochs", "0"], "--epochs"),
    (["--workers", "999"], "--workers"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--pca-noise", "-1"], "--pca-noise"),
    (["--momentum", "1"], "--momentum"),
    (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--lr-patience", "0"], "--lr-patience"),
    (["--seed", "-1"], "--seed"),
    (["--device", "nonsense"], "--device"),
    (["--device", "cuda:99"], "--device"),
    (["--device", "cpu,cpu,cpu"], "--device"),
    (["--data", "/no/such/folder"], "--data"),
    (["--resume", "--restart"], "--restart: not with --resume"),
]


@pytest.mark.parametrize(("flags", "named"), BAD_TRAIN, ids=[" ".join(f) for f, _ in BAD_TRAIN])
def test_bad_train_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str) -> None:
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("alexgui train: ") and named in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no run folder left behind: the same command may be retried


def test_workers_message_says_the_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "r"), "--workers", "999"]) == 2
    assert "give an integer from 0 to 64" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[trian]\nepochs = 3\n", "unknown section(s) [trian]"),
        ("[train]\nepochz = 3\n", "unknown setting(s) epochz"),
        ("[train]\nbatch_size = 0\n", "[train] batch_size: 0 is out of range"),
        ("[train]\nlr = nan\n", "[train] lr: nan is out of range"),
        ("[data]\ncrop = 48\nresize = 56\n", "[data] crop: 48 does not fit"),
        ("[data]\ncrop = 300\n", "[data] crop: 300 does not fit"),
        ('[train]\ndevice = ""\n', "[train] device: must not be empty"),
    ],
)
def test_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, problem: str) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(toml, encoding="utf-8")
    assert main(["train", "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(config) in err and problem in err, err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="unknown section"):
        RunConfig.from_toml("[model]\n[trian]\n")


def test_a_missing_data_folder_from_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('[data]\ndata = "/no/such/images"\n', encoding="utf-8")
    assert main(["train", "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[data] data: /no/such/images: no such folder" in err, err
    assert not (tmp_path / "run").exists()


def test_a_folder_without_two_classes_is_refused_before_the_run_folder_is_made(
    tmp_path: Path, tiny_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No class folders, or only one: one line naming the folder, exit 2, no run folder; once mended, the
    same command trains (a refused run left a folder behind that only --resume would take)."""
    data = make_dataset(tmp_path / "photos", classes=1, train_per_class=3, val_per_class=1)
    out = tmp_path / "run"
    command = ["train", "--data", str(data), "--out", str(out), "--config", str(tiny_toml), "--max-steps", "1"]
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs at least 2 classes" in err and str(data) in err, err
    assert not out.exists()
    (tmp_path / "empty").mkdir()
    assert main([*command[:2], str(tmp_path / "empty"), *command[3:]]) == 2
    assert "empty: no class folders with files" in capsys.readouterr().err and not out.exists()
    make_dataset(data, classes=2, train_per_class=3, val_per_class=1)  # the second class added to the same folder
    assert main(command) == 0 and (out / "checkpoints").is_dir()


def test_a_refused_folder_costs_no_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The data folder is checked before the source: --download does not fetch 244 MB for a refused command."""
    from alexgui.engine.model import zoo

    fetched: list[str] = []
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: tmp_path / "hub")
    monkeypatch.setattr(zoo, "download", lambda url, *a, **k: fetched.append(url))
    data = make_dataset(tmp_path / "photos", classes=1, train_per_class=2, val_per_class=1)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--init", "torchvision", "--download"]) == 2
    assert "needs at least 2 classes" in capsys.readouterr().err and fetched == []


def test_an_existing_run_names_resume_and_restart(trained: Path, tiny_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = RunConfig.load(trained / "config.toml")
    assert main(["train", "--data", cfg.data.data, "--out", str(trained), "--config", str(tiny_toml)]) == 2
    err = capsys.readouterr().err
    assert "already an alexgui run" in err and "--resume" in err and "--restart" in err


BAD_EXPERIMENT = [
    ["--epochs", "0"],
    ["--max-steps", "-5"],
    ["--batch-size", "0"],
    ["--lr", "-1"],
    ["--workers", "999"],
    ["--device", "nonsense"],
    ["--seeds", "0"],
    ["--crop", "10"],
    ["--smooth-steps", "0"],
    ["--target-error", "1"],
    ["--target-error", "nan"],
    ["--data", "/no/such/folder"],
    ["--data", ""],
]


@pytest.mark.parametrize("flags", BAD_EXPERIMENT, ids=[" ".join(f) for f in BAD_EXPERIMENT])
def test_bad_experiment_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    out = tmp_path / "exp"
    assert main(["experiment", "lrn", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flags[0] in err and "Traceback" not in err, err
    assert not out.exists()


def legacy_run_with_leftovers(trained: Path, tmp_path: Path) -> Path:
    """A run made before the marker existed (known by its checkpoint, as in test_run_ownership), with the
    temporaries of a killed writer in it: claiming it would write the marker and the lock, and sweep them."""
    run = copy_run(trained, tmp_path)
    (run / MARKER_NAME).unlink()
    pid = os.getppid()  # alive: only the lock would tell these are stale
    (run / "checkpoints" / f".last.safetensors.tmp-{pid}-0badcafe").write_bytes(b"half a checkpoint")
    (run / f".config.toml.tmp-{pid}-deadbeef").write_bytes(b"half a config")
    assert ownership(run) is Ownership.LEGACY
    return run


def tree(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


@pytest.mark.parametrize("mode", ["--resume", "--restart"])
@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--lr", "-1"], "argument --lr: -1.0 is out of range"),
        (["--device", "nonsense"], "argument --device: "),
        (["--data", "/no/such/folder"], "argument --data: /no/such/folder: no such folder"),
        (["--max-steps", "-5"], "argument --max-steps: "),
    ],
)
def test_a_bad_flag_on_resume_or_restart_leaves_the_run_untouched(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, flags: list[str], named: str
) -> None:
    """Every argument is checked before the run is taken (issue 12 item 3): no marker, no lock file,
    no temporary swept, nothing cleared by --restart."""
    run = legacy_run_with_leftovers(trained, tmp_path)
    before = tree(run)
    assert main(["train", "--out", str(run), mode, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("alexgui train: ") and named in err, err
    assert tree(run) == before  # byte for byte: still no alexgui-run.json, no .alexgui.lock, temporaries kept


@pytest.mark.parametrize("mode", ["--resume", "--restart"])
def test_a_bad_device_in_the_runs_own_settings_is_named_before_the_run_is_taken(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    run = legacy_run_with_leftovers(trained, tmp_path)
    config = run / "config.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('device = "cpu"', 'device = "nonsense"'), encoding="utf-8")
    before = tree(run)
    assert main(["train", "--out", str(run), mode]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{config} [train] device: unknown device 'nonsense'" in err, err
    assert tree(run) == before


# -- resuming says what it does ---------------------------------------------------------------------


def test_resume_at_max_steps_does_nothing(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(trained, tmp_path)
    before = {p: p.read_bytes() for p in (run / "metrics.jsonl", run / "checkpoints" / "last.safetensors", run / "config.toml")}
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume"]) == 0  # the run's own --max-steps 2
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("already at step 2") == 2 and "nothing to do" in out
    assert {p: p.read_bytes() for p in before} == before
    # The engine itself (the app's way in) takes no step either.
    events = list(train(RunDir.open(run).config(), RunDir.open(run), resume=True))
    assert [type(e) for e in events] == [Finished] and events[0].step == 2
    assert {p: p.read_bytes() for p in before} == before


def test_gone_checkpoints_are_not_silently_restarted(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(trained, tmp_path)
    shutil.rmtree(run / "checkpoints")
    log = (run / "metrics.jsonl").read_bytes()
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "last.safetensors: missing" in err and "--restart" in err, err
    assert (run / "metrics.jsonl").read_bytes() == log
    with pytest.raises(Exception, match="--restart"):  # the app's way in says the same, writing nothing
        list(train(RunDir.open(run).config(), RunDir.open(run), resume=True))
    assert (run / "metrics.jsonl").read_bytes() == log

    assert main(["train", "--out", str(run), "--restart", "--max-steps", "1"]) == 0
    events, _ = read_events(run / "metrics.jsonl")
    assert [e.step for e in events if isinstance(e, StepDone)] == [1]  # one fresh sequence, not a second one
    assert sum(isinstance(e, RunStarted) for e in events) == 1


def test_resume_refused_for_changed_classes_leaves_config_alone(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(trained, tmp_path)
    other = make_dataset(tmp_path / "three", classes=3, train_per_class=2, val_per_class=1)
    config = (run / "config.toml").read_bytes()
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "3", "--data", str(other), "--lr", "0.002"]) == 1
    assert "differ from the dataset's" in capsys.readouterr().out
    assert (run / "config.toml").read_bytes() == config


def crafted(run: Path, **changes: object) -> Path:
    path = run / "checkpoints" / "last.safetensors"
    checkpoint = load_checkpoint(path)
    meta = dict(checkpoint.meta)
    for key, value in changes.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    save_checkpoint(path, checkpoint.tensors, meta)
    return path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"class_names": None}, "'class_names' is missing"),
        ({"class_names": "cat,dog"}, "'class_names' is 'cat,dog'"),
        ({"step": "7"}, "'step' is '7'"),
        ({"epoch_sums": {"loss": 1}}, "'epoch_sums'"),
        ({"schedule": {"lr": 0.1, "bogus": 1}}, "'schedule' cannot be used"),
        ({"preprocessing": {"mode": "mean_image"}}, "'preprocessing' cannot be used"),
    ],
)
def test_crafted_checkpoint_metadata_is_named(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict, field: str
) -> None:
    run = copy_run(trained, tmp_path)
    path = crafted(run, **changes)
    code = main(["train", "--out", str(run), "--resume", "--max-steps", "4"])
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert code in (1, 2) and str(path) in text and field in text, text
    assert "KeyError" not in text and "unexpected error" not in text and "Traceback" not in text
    if "preprocessing" not in changes:
        with pytest.raises(CheckpointError, match=field.replace("(", r"\(")):
            load_resume_checkpoint(path)


def test_a_corrupt_checkpoint_is_not_called_the_last_good_one(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path)
    last = run / "checkpoints" / "last.safetensors"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) - 1000])  # the header intact, the tensors cut short
    events = list(train(RunDir.open(run).config(), RunDir.open(run), resume=True))
    failed = events[-1]
    assert isinstance(failed, Failed) and str(last) in failed.message
    assert failed.checkpoint is None  # nothing here is known good


def test_stop_in_the_preflight_says_nothing_was_saved(dataset: Path, tiny_toml: Path, tmp_path: Path) -> None:
    cfg = RunConfig.load(tiny_toml)
    cfg.data.data = str(dataset)
    run = RunDir.create(tmp_path / "run", cfg)
    control = TrainControl()
    control.stop.set()  # Ctrl-C before the first step
    events = list(train(cfg, run, control))
    assert isinstance(events[-1], Stopped) and events[-1].checkpoint is None

    out = io.StringIO()
    printer = TrainPrinter(out, run.path)
    for event in events:
        printer.show(event)
    assert "None" not in out.getvalue() and "--resume" not in out.getvalue()
    assert "Nothing was saved" in out.getvalue() and "--restart" in out.getvalue() and printer.exit_code == 130


# -- one writer: the app's way in, and two real processes resuming at once --------------------------


def test_train_takes_the_lock_for_a_run_opened_for_reading(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path)
    holder = RunDir.open_for_writing(run)
    log = (run / "metrics.jsonl").read_bytes()
    with pytest.raises(RunDirError, match="already training this run"):
        list(train(RunDir.open(run).config(), RunDir.open(run), resume=True))
    assert (run / "metrics.jsonl").read_bytes() == log
    holder.close()


@pytest.mark.skipif(os.name == "nt", reason="flock semantics are tested on POSIX")
def test_two_resumers_at_once_one_trains_the_other_is_refused(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.time() + 6  # both interpreters have imported everything and start together
    script = (
        "import sys, time\n"
        "from alexgui.cli import main\n"
        "while time.time() < float(sys.argv[1]): pass\n"
        "sys.exit(main(['train', '--out', sys.argv[2], '--resume', '--max-steps', '6']))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(start), str(run)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for _ in range(2)
    ]
    results = [(p.pid, p.returncode, out, err) for p in procs for out, err in [p.communicate(timeout=600)]]
    codes = sorted(code for _, code, _, _ in results)
    assert codes == [0, 2], results
    winner = next(pid for pid, code, _, _ in results if code == 0)
    loser_err = next(err for _, code, _, err in results if code == 2).strip()
    assert f"process {winner} is already training this run" in loser_err, loser_err
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6]  # one writer: no step twice, none interleaved

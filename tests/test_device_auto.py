"""`auto`, the default device: a CUDA GPU, else Apple's GPU (mps), else the CPU, with torch's own
queries patched to stand for each machine; the command line says which in one line, records "auto" in
the run's config.toml (resolved again when it resumes), and the inference commands default to it too."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from alexgui.cli import build_parser, main
from alexgui.commands import train as train_command
from alexgui.commands.arguments import inference_device
from alexgui.config import RunConfig
from alexgui.engine.devices import (
    DeviceError,
    best_choice,
    best_device,
    describe_auto,
    device_choices,
    parse_device,
    parse_devices,
    resolve_spec,
)

pytestmark = pytest.mark.timeout(120)


def machine(monkeypatch: pytest.MonkeyPatch, cuda: int = 0, mps: bool = False) -> None:
    """This process as a machine with `cuda` CUDA GPUs and Apple's GPU or not."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"Fake GPU {i}")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    ("cuda", "mps", "picked"),
    [(2, True, "cuda:0"), (1, False, "cuda:0"), (0, True, "mps"), (0, False, "cpu")],
)
def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch, cuda: int, mps: bool, picked: str) -> None:
    machine(monkeypatch, cuda, mps)
    assert best_device() == torch.device(picked)
    assert parse_devices("auto") == [torch.device(picked)] and parse_device(" AUTO ") == torch.device(picked)
    assert best_choice(device_choices()) == picked  # what the app preselects is what auto picks
    assert picked in describe_auto("auto")


def test_auto_under_torchrun_means_each_process_own_gpu_and_never_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, cuda=2)
    assert resolve_spec("auto", distributed=True) == "cuda"  # rank_device_spec turns it into cuda:LOCAL_RANK
    assert resolve_spec("auto") == "cuda:0" and resolve_spec("cuda:1") == "cuda:1"
    machine(monkeypatch, mps=True)
    assert resolve_spec("auto", distributed=True) == "cpu"  # MPS cannot share gradients between processes
    assert resolve_spec("auto") == "mps"


def test_a_broken_cuda_driver_makes_auto_the_next_best(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> int:
        raise RuntimeError("CUDA driver initialization failed")

    machine(monkeypatch, cuda=1)
    monkeypatch.setattr(torch.cuda, "device_count", broken)
    assert best_device() == torch.device("cpu")


def test_auto_with_another_device_is_refused_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch)
    for spec in ("auto,cpu", "cpu,auto", "auto,auto"):
        with pytest.raises(DeviceError, match="'auto' picks one device"):
            parse_devices(spec)


def test_the_best_choice_of_a_list_is_never_the_two_tower_split() -> None:
    assert best_choice([("cpu", "CPU"), ("cuda:0,cuda:1", "two"), ("cuda:1", "GPU 1")]) == "cuda:1"
    assert best_choice([("cpu", "CPU"), ("mps", "Apple")]) == "mps"
    assert best_choice([("cpu", "CPU")]) == "cpu" and best_choice([]) == "cpu"


def test_auto_is_the_default_everywhere() -> None:
    assert RunConfig().train.device == "auto"
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("index", "neighbours"):
        device = next(a for a in sub.choices[command]._actions if "--device" in a.option_strings)
        assert device.default == "auto" and "auto (default" in (device.help or "")
    assert inference_device(None, onnx=False) == "auto"  # classify, torch backend
    assert inference_device(None, onnx=True) == "auto"  # classify, ONNX Runtime: its own auto, as before


@pytest.mark.parametrize(("cuda", "mps", "line"), [(1, False, "cuda:0 (Fake GPU 0)"), (0, True, "mps"), (0, False, "cpu")])
def test_train_says_which_device_and_records_auto(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], cuda: int, mps: bool, line: str
) -> None:
    machine(monkeypatch, cuda, mps)
    seen: list[RunConfig] = []
    monkeypatch.setattr(train_command, "_train", lambda cfg, run_dir, resume, ctx: seen.append(cfg) or 0)
    assert main(["train", "--out", str(tmp_path / "run")]) == 0
    said = [s for s in capsys.readouterr().out.splitlines() if "device" in s]
    assert len(said) == 1 and said[0].startswith(f"alexgui train: device auto: {line}"), said
    # The run keeps "auto": resumed on another machine, it picks that machine's best device.
    assert seen[0].train.device == "auto"
    assert RunConfig.load(tmp_path / "run" / "config.toml").train.device == "auto"


def test_a_device_given_by_name_is_not_announced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    machine(monkeypatch)
    monkeypatch.setattr(train_command, "_train", lambda cfg, run_dir, resume, ctx: 0)
    assert main(["train", "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    assert "device auto" not in capsys.readouterr().out


def test_asking_for_mps_without_it_is_still_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    machine(monkeypatch)
    assert main(["train", "--out", str(tmp_path / "run"), "--device", "mps"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "argument --device" in lines[0] and "no usable Apple GPU" in lines[0]
    assert not (tmp_path / "run").exists()


def test_the_predictor_resolves_auto_on_the_machine_it_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference takes the same vocabulary: TorchPredictor("auto") runs where auto points (here the CPU)."""
    from alexgui.engine.data.transforms import Preprocess
    from alexgui.engine.inference.predict import TorchPredictor
    from alexgui.engine.model.networks import build_model

    machine(monkeypatch)
    cfg = RunConfig()
    cfg.model.num_classes = 3
    cfg.model.arch = "torchvision"
    predictor = TorchPredictor(build_model(cfg.model), Preprocess.imagenet_mean_std(), ["a", "b", "c"],
                               fingerprint="test", source="test", device="auto")
    assert predictor.device == torch.device("cpu")


def test_a_run_on_auto_trains_where_auto_points_and_keeps_auto(tmp_path: Path) -> None:
    """The engine resolves "auto" when the run starts: RunStarted (the log) names the device used, the
    run's config.toml keeps "auto". One step, on whatever this machine's best device is (torch's own
    queries unpatched: torch itself asks them during a step)."""
    from alexgui.engine.events import RunStarted
    from alexgui.engine.store.rundir import RunDir
    from alexgui.engine.training.loop import train
    from tests.helpers import make_dataset, tiny_config

    cfg = tiny_config(make_dataset(tmp_path / "data"), device="auto", max_steps=1)
    run = RunDir.create(tmp_path / "run", cfg)
    events = list(train(cfg, run))
    assert [e.device for e in events if isinstance(e, RunStarted)] == [str(best_device())], events[-1]
    assert RunConfig.load(tmp_path / "run" / "config.toml").train.device == "auto"

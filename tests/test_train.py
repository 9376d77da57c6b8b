"""The training loop: events, the paper's recipe, overfitting, resume continuity, stop, pause, NaN."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch

from alexgui.engine.events import (
    CheckpointSaved,
    EpochDone,
    Failed,
    Finished,
    Paused,
    PreflightReport,
    Resumed,
    RunStarted,
    StepDone,
    Stopped,
)
from alexgui.engine.store.checkpoint import load_checkpoint, split_prefix
from alexgui.engine.store.metrics_log import read_events
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training import trainer as trainer_module
from alexgui.engine.training.control import TrainControl
from alexgui.engine.training.evaluation import accuracy
from alexgui.engine.training.loop import train
from alexgui.engine.training.schedule import PlateauSchedule
from tests.helpers import make_dataset, tiny_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), classes=2, train_per_class=6, val_per_class=2)


def run_events(cfg, path: Path, control: TrainControl | None = None, resume: bool = False) -> list:
    run = RunDir.open(path) if resume else RunDir.create(path, cfg)
    return list(train(cfg, run, control, resume=resume))


def test_accuracy_topk() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 2, 1])
    top1, top2 = accuracy(logits, target, topk=(1, 2))
    assert top1 == pytest.approx(1 / 3)
    assert top2 == pytest.approx(2 / 3)
    # k above the class count counts every class as predicted
    assert accuracy(logits, target, topk=(5,)) == [1.0]


def test_plateau_schedule_drops_three_times_at_most() -> None:
    s = PlateauSchedule(lr=0.01, patience=2, max_drops=3)
    assert s.update(0.5) is None  # new best
    drops = [s.update(0.6) for _ in range(20)]
    assert [d for d in drops if d is not None] == pytest.approx([1e-3, 1e-4, 1e-5])
    assert PlateauSchedule.from_state(s.state()) == s


def test_run_reports_events_and_writes_log(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(dataset, epochs=1)
    events = run_events(cfg, tmp_path / "run")
    kinds = [type(e) for e in events]
    assert kinds.count(PreflightReport) == 1
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.class_names == ["class_0", "class_1"] and started.steps_per_epoch == 3
    steps = [e for e in events if isinstance(e, StepDone)]
    assert [s.step for s in steps] == [1, 2, 3]
    assert all(s.lr == pytest.approx(0.01) and s.images_per_s > 0 and math.isfinite(s.loss) for s in steps)
    epoch = next(e for e in events if isinstance(e, EpochDone))
    assert epoch.val_top1_err is not None and 0.0 <= epoch.val_top1_err <= 1.0
    assert isinstance(events[-1], Finished) and events[-1].reason == "epochs"
    assert any(isinstance(e, CheckpointSaved) and e.kind == "last" for e in events)

    logged, problems = read_events(RunDir.open(tmp_path / "run").metrics_path)
    assert problems == []
    assert [e.type for e in logged] == [e.type for e in events if e.type != "progress"]
    assert all(isinstance(e.step, int) and isinstance(e.epoch, int) for e in logged)


def test_checkpoint_carries_everything_to_rebuild(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(dataset, max_steps=2)
    run_events(cfg, tmp_path / "run")
    ckpt = load_checkpoint(RunDir.open(tmp_path / "run").last_checkpoint)
    assert ckpt.meta["class_names"] == ["class_0", "class_1"]
    assert ckpt.meta["step"] == 2 and ckpt.meta["preprocessing"]["mode"] == "mean_image"
    stats = split_prefix(ckpt.tensors, "stats.")
    assert stats["mean_image"].shape == (256, 256, 3)
    assert any(k.startswith("optim.") for k in ckpt.tensors)  # momentum is saved for resume


def test_resume_continues_exactly(dataset: Path, tmp_path: Path) -> None:
    """N steps, stop, resume N more == 2N steps straight (CPU, fixed seeds), across an epoch boundary."""
    straight = tiny_config(dataset, epochs=3, max_steps=5)
    run_events(straight, tmp_path / "straight")

    first = tiny_config(dataset, epochs=3, max_steps=2)
    run_events(first, tmp_path / "split")
    second = tiny_config(dataset, epochs=3, max_steps=5)
    events = run_events(second, tmp_path / "split", resume=True)
    assert next(e for e in events if isinstance(e, RunStarted)).resumed

    a = load_checkpoint(RunDir.open(tmp_path / "straight").last_checkpoint)
    b = load_checkpoint(RunDir.open(tmp_path / "split").last_checkpoint)
    for name, tensor in split_prefix(a.tensors, "model.").items():
        assert torch.equal(tensor, b.tensors[f"model.{name}"]), name
    # the logged curve continues: steps 1..5 once each, no gap and no repeat
    logged, _ = read_events(RunDir.open(tmp_path / "split").metrics_path)
    assert [e.step for e in logged if isinstance(e, StepDone)] == [1, 2, 3, 4, 5]


def test_stop_request_saves_and_stops(dataset: Path, tmp_path: Path) -> None:
    control = TrainControl()
    run = RunDir.create(tmp_path / "run", tiny_config(dataset, epochs=5))
    events = []
    for event in train(run.config(), run, control):
        events.append(event)
        if isinstance(event, StepDone) and event.step == 2:
            control.stop.set()
    assert isinstance(events[-1], Stopped)
    assert events[-1].step == 2 and Path(events[-1].checkpoint).exists()
    assert load_checkpoint(events[-1].checkpoint).meta["step"] == 2


def test_pause_blocks_until_resumed(dataset: Path, tmp_path: Path) -> None:
    control = TrainControl()
    run = RunDir.create(tmp_path / "run", tiny_config(dataset, max_steps=3))
    events = []
    for event in train(run.config(), run, control):
        events.append(event)
        if isinstance(event, StepDone) and event.step == 1:
            control.pause.set()
            threading.Timer(0.3, control.pause.clear).start()
    kinds = [type(e) for e in events]
    assert Paused in kinds and Resumed in kinds
    assert kinds.index(Paused) < kinds.index(Resumed)
    assert isinstance(events[-1], Finished)


def test_nan_loss_fails_clearly_and_keeps_last_good_checkpoint(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = trainer_module.Trainer._train_step

    def poisoned(self, u8, labels):
        loss, top1, top5 = original(self, u8, labels)
        return (math.nan if self.step >= 4 else loss), top1, top5

    monkeypatch.setattr(trainer_module.Trainer, "_train_step", poisoned)
    events = run_events(tiny_config(dataset, epochs=3), tmp_path / "run")
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert "loss became nan" in failed.message and "step 5" in failed.message
    # the checkpoint from the end of epoch 1 (step 3) is intact and is the one named
    assert failed.checkpoint is not None
    assert load_checkpoint(failed.checkpoint).meta["step"] == 3


def test_bad_dataset_ends_with_failed_event(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    events = run_events(tiny_config(empty), tmp_path / "run")
    assert isinstance(events[-1], Failed)
    assert str(empty) in events[-1].message


def test_unknown_device_is_a_clear_failure(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(dataset, device="cuda:7" if not torch.cuda.is_available() else "tpu")
    events = run_events(cfg, tmp_path / "run")
    assert isinstance(events[-1], Failed)
    assert "device" in events[-1].message


@pytest.mark.slow
def test_tiny_dataset_overfits(dataset: Path, tmp_path: Path) -> None:
    """The paper's recipe (SGD, momentum 0.9, wd 5e-4, N(0, 0.01) init) learns a tiny set to zero error."""
    cfg = tiny_config(dataset, epochs=40, lr=0.01)
    cfg.model.dropout = 0.0
    cfg.data.random_crop = False
    cfg.data.flip = False
    cfg.data.pca_noise = 0.0
    control = TrainControl()
    run = RunDir.create(tmp_path / "run", cfg)
    epochs = []
    for event in train(cfg, run, control):
        assert not isinstance(event, Failed), event.message
        if isinstance(event, EpochDone):
            epochs.append(event)
            if event.train_top1_err == 0.0:
                control.stop.set()  # learned: no need to run the remaining epochs
    assert epochs[-1].train_top1_err == 0.0, [e.train_top1_err for e in epochs]
    assert epochs[0].train_top1_err > 0.0  # it had something to learn

"""conv1's initial std (the quick preset's one change for Figure 3): only conv1 of a fresh paper network is
rescaled, from the paper's own draws; a resumed run keeps its checkpoint's weights; and started small,
conv1 shows structure within a few steps where the paper's N(0, 0.01) start is still noise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alexgui.config import ConfigError, ModelConfig, RunConfig
from alexgui.engine.events import KernelSnapshot
from alexgui.engine.model.base import INIT_WEIGHT_STD
from alexgui.engine.model.kernel_scores import structure_score
from alexgui.engine.model.networks import build_model
from alexgui.engine.store.checkpoint import load_checkpoint
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.control import TrainControl
from alexgui.engine.training.loop import train
from alexgui.presets import PAPER, QUICK
from tests.helpers import make_dataset, tiny_config

pytestmark = pytest.mark.timeout(180)


def _fresh(arch: str = "paper") -> torch.nn.Module:
    torch.manual_seed(7)
    return build_model(ModelConfig(arch=arch, num_classes=3))  # type: ignore[arg-type]


def test_only_conv1_is_rescaled_from_the_papers_own_draws() -> None:
    paper, small = _fresh(), _fresh()
    small.start_conv1_at(1e-5)
    before, after = paper.state_dict(), small.state_dict()
    conv1 = {k for k in before if ".conv1." in k and k.endswith("weight")}
    assert len(conv1) == 2  # one per tower
    for key in before:
        if key in conv1:
            torch.testing.assert_close(after[key], before[key] * (1e-5 / INIT_WEIGHT_STD), rtol=1e-6, atol=0)
            assert after[key].std().item() == pytest.approx(1e-5, rel=0.02)
        else:
            assert torch.equal(after[key], before[key]), key


@pytest.mark.parametrize("arch", ["paper", "torchvision"])
def test_the_papers_std_and_torchvisions_network_are_left_as_they_are(arch: str) -> None:
    untouched, model = _fresh(arch), _fresh(arch)
    model.start_conv1_at(INIT_WEIGHT_STD if arch == "paper" else 1e-5)  # torchvision keeps PyTorch's init
    assert all(torch.equal(a, b) for a, b in zip(untouched.state_dict().values(), model.state_dict().values()))


def test_the_presets_and_the_range() -> None:
    assert PAPER.conv1_init_std == INIT_WEIGHT_STD == RunConfig().train.conv1_init_std
    assert QUICK.conv1_init_std < INIT_WEIGHT_STD and QUICK.apply(RunConfig()).train.conv1_init_std == QUICK.conv1_init_std
    for bad in (0, -1e-5, 2):
        with pytest.raises(ConfigError, match="conv1_init_std"):
            RunConfig.from_dict({"train": {"conv1_init_std": bad}})


def _conv1_at_each_snapshot(cfg: RunConfig, run: RunDir, resume: bool = False) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    control = TrainControl(snapshot_seconds=0.0, on_kernels=lambda kernels: seen.append(kernels["conv1"]))
    events = list(train(cfg, run, control, resume=resume))
    assert events[-1].type == "finished", events[-1]
    return seen


def test_a_fresh_run_starts_there_and_a_resumed_one_keeps_its_checkpoint(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", classes=2, train_per_class=4, val_per_class=1)
    cfg = tiny_config(data, epochs=1, max_steps=1, conv1_init_std=1e-5)
    cfg.data.resize, cfg.data.crop = 73, 64
    first = _conv1_at_each_snapshot(cfg, RunDir.create(tmp_path / "run", cfg))
    assert first[0].std().item() == pytest.approx(1e-5, rel=0.05)  # step 0: the initial weights
    cfg.train.max_steps = 2
    resumed = _conv1_at_each_snapshot(cfg, RunDir.open(tmp_path / "run"), resume=True)
    torch.testing.assert_close(resumed[0], first[-1], rtol=0, atol=0)  # the checkpoint's, not rescaled again


def test_started_small_conv1_shows_structure_within_a_few_steps(tmp_path: Path) -> None:
    """The mechanism behind the quick preset, on generated stripes: what conv1 learns in a step is smooth
    but small beside the paper's N(0, 0.01) noise; started a thousand times smaller, it shows at once."""
    data = make_dataset(tmp_path / "data", classes=4, train_per_class=8, val_per_class=1)
    scores = {}
    for std in (INIT_WEIGHT_STD, QUICK.conv1_init_std):
        cfg = tiny_config(data, epochs=1, max_steps=6, batch_size=8, lr=QUICK.lr, conv1_init_std=std)
        cfg.data.resize, cfg.data.crop = 146, 128
        run = RunDir.create(tmp_path / f"run-{std:g}", cfg)
        events = list(train(cfg, run, TrainControl(snapshot_seconds=1e9)))  # snapshots at the start only
        assert events[-1].type == "finished", events[-1]
        start = next(e for e in events if isinstance(e, KernelSnapshot))
        assert abs(start.structure_all or 0.0) < 0.05  # both start as noise: the score is scale-free
        tensors = load_checkpoint(run.last_checkpoint).tensors
        conv1 = torch.cat([tensors[f"model.towers.{t}.conv1.weight"] for t in (0, 1)])
        scores[std] = structure_score(conv1)
    assert scores[INIT_WEIGHT_STD] < 0.1, scores
    assert scores[QUICK.conv1_init_std] > 0.5, scores


def test_conv1s_learning_rate_multiple_is_its_own_group_and_survives_the_schedules_drops() -> None:
    from alexgui.engine.training.setup import sgd

    model = _fresh()
    cfg = RunConfig()
    single = sgd(model, cfg, 0.01)
    assert len(single.param_groups) == 1 and single.param_groups[0]["lr"] == 0.01  # the paper: one rate
    cfg.train.conv1_lr_scale = 10.0
    optimizer = sgd(model, cfg, 0.01)
    conv1, rest = optimizer.param_groups
    conv1_params = {id(p) for m in model.layer_modules("conv1") for p in m.parameters()}
    assert {id(p) for p in conv1["params"]} == conv1_params and len(conv1_params) == 4  # weights and biases, 2 towers
    assert len(conv1["params"]) + len(rest["params"]) == len(list(model.parameters()))
    assert (conv1["lr"], rest["lr"]) == pytest.approx((0.1, 0.01))
    for group in optimizer.param_groups:  # what the loop does when the schedule divides the rate by 10
        group["lr"] = 0.001 * group["lr_scale"]
    assert (conv1["lr"], rest["lr"]) == pytest.approx((0.01, 0.001))


def test_one_step_moves_conv1_by_its_multiple(tmp_path: Path) -> None:
    """The same first step with conv1's rate x1 and x10: conv1 moves exactly 10 times as far, the rest the same."""
    data = make_dataset(tmp_path / "data", classes=2, train_per_class=4, val_per_class=1)
    moved = {}
    for scale in (1.0, 10.0):
        cfg = tiny_config(data, epochs=1, max_steps=1, conv1_lr_scale=scale)
        cfg.data.resize, cfg.data.crop = 73, 64
        seen = _conv1_at_each_snapshot(cfg, RunDir.create(tmp_path / f"run-{scale:g}", cfg))
        tensors = load_checkpoint(tmp_path / f"run-{scale:g}" / "checkpoints" / "last.safetensors").tensors
        moved[scale] = (seen[-1] - seen[0], tensors["model.fc8.weight"])
    step10, step1 = moved[10.0][0], moved[1.0][0]
    # float32 rounding of w + step at |w| ~ 0.01 is ~1e-9; the steps themselves are ~1e-5 and up
    assert (step10 - 10 * step1).abs().max() < 1e-3 * step10.abs().max()
    assert step1.abs().max() > 0
    torch.testing.assert_close(moved[10.0][1], moved[1.0][1], rtol=1e-4, atol=1e-7)


def test_torchvisions_network_keeps_one_rate_as_it_keeps_its_init() -> None:
    from alexgui.engine.training.setup import sgd

    cfg = RunConfig()
    cfg.train.conv1_lr_scale = 10.0
    optimizer = sgd(_fresh("torchvision"), cfg, 0.01)
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["lr"] == 0.01

"""Two-device placement of the paper's towers: device strings, equivalence, traffic, checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from alexgui.engine.events import StepDone
from alexgui.engine.model.paper import PaperAlexNet
from alexgui.engine.model.placement import (
    PlacementError,
    TwoTowerPlacement,
    device_stats,
    place_model,
    take_tower_stats,
)
from alexgui.engine.model.torchvision_alexnet import TorchvisionAlexNet
from alexgui.engine.store.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    split_prefix,
)
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.loop import train
from tests.helpers import make_dataset, tiny_config

SIZE = 80  # small inputs keep the test fast; pool5 is still averaged to 6x6 for fc6


def paper(seed: int = 0) -> PaperAlexNet:
    torch.manual_seed(seed)
    return PaperAlexNet(num_classes=5)


def forward_backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(123)  # the same dropout masks for both models
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return logits.detach(), grads


def test_split_model_matches_single_device_logits_and_gradients() -> None:
    single = paper()
    split = place_model(copy.deepcopy(single), "cpu,cpu")
    assert isinstance(split.placement, TwoTowerPlacement)  # the placed forward, not the original
    assert not isinstance(single.placement, TwoTowerPlacement)
    x = torch.randn(3, 3, SIZE, SIZE)
    y = torch.tensor([0, 3, 4])
    logits_a, grads_a = forward_backward(single, x, y)
    logits_b, grads_b = forward_backward(split, x, y)
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-5, atol=1e-7, msg=name)
    # activations() runs through the same placed forward
    acts_a = single.eval().activations(x, ["conv3", "fc7"])
    acts_b = split.eval().activations(x, ["conv3", "fc7"])
    for name in acts_a:
        torch.testing.assert_close(acts_b[name], acts_a[name], rtol=1e-5, atol=1e-6)


def test_traffic_counts_what_passes_between_the_towers() -> None:
    model = place_model(paper(), "cpu,cpu")
    x = torch.randn(2, 3, SIZE, SIZE)
    acts = model.eval().activations(x, ["pool2", "fc6", "fc7"])
    halves = {name: value.nelement() * 4 // 2 for name, value in acts.items()}
    halves["pool5"] = 2 * 128 * 6 * 6 * 4  # one tower's pool5, averaged to 6x6 and flattened for fc6
    take_tower_stats(model)  # forget the activations() pass
    # Each tower receives the other's pool2, pool5 and fc6; fc8 (on tower 0's device) gets tower 1's fc7.
    one_way = 2 * (halves["pool2"] + halves["pool5"] + halves["fc6"]) + halves["fc7"]
    with torch.no_grad():
        model(x)
    ms, sent = take_tower_stats(model)
    assert sent == one_way
    assert len(ms) == 2 and all(t > 0 for t in ms)
    model.train()
    F.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    assert take_tower_stats(model)[1] == 2 * one_way  # the gradients travel back the same way
    assert take_tower_stats(model) == ([0.0, 0.0], 0)  # take() resets


def test_single_device_model_reports_no_tower_stats() -> None:
    model = place_model(paper(), "cpu")
    assert take_tower_stats(model) == (None, None)
    assert next(model.parameters()).device == torch.device("cpu")


def test_checkpoints_load_across_placements(tmp_path: Path) -> None:
    split = place_model(paper(seed=1), "cpu,cpu")
    single = paper(seed=2)
    assert list(split.state_dict()) == list(single.state_dict())
    assert any(k.startswith("towers.1.") for k in split.state_dict())
    path = tmp_path / "split.safetensors"
    save_checkpoint(path, {f"model.{k}": v for k, v in split.state_dict().items()}, {"note": "split"})
    single.load_state_dict(split_prefix(load_checkpoint(path).tensors, "model."))
    x = torch.randn(2, 3, SIZE, SIZE)
    torch.testing.assert_close(single.eval()(x), split.eval()(x))
    # and back: a single-device checkpoint into a split model
    fresh = place_model(paper(seed=3), "cpu,cpu")
    fresh.load_state_dict(single.state_dict())
    torch.testing.assert_close(fresh.eval()(x), single(x))


def test_deepcopy_of_a_split_model_trains_its_own_weights() -> None:
    original = place_model(paper(), "cpu,cpu")
    clone = copy.deepcopy(original)
    clone.train()
    F.cross_entropy(clone(torch.randn(2, 3, SIZE, SIZE)), torch.tensor([1, 2])).backward()
    assert clone.towers[1].conv1.weight.grad is not None
    assert original.towers[1].conv1.weight.grad is None
    assert take_tower_stats(original) == ([0.0, 0.0], 0)


def test_single_tower_model_refuses_two_devices() -> None:
    with pytest.raises(PlacementError, match="single tower"):
        place_model(TorchvisionAlexNet(num_classes=3), "cpu,cpu")


def test_device_stats_lists_each_device_once() -> None:
    rows = device_stats(["cpu", torch.device("cpu")])
    assert len(rows) == 1 and rows[0]["device"] == "cpu" and rows[0]["memory_allocated"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_stats_reports_gpu_memory() -> None:
    x = torch.ones(1024, 1024, device="cuda")
    row = device_stats(["cuda:0"])[0]
    assert row["memory_allocated"] >= x.nelement() * 4 and row["memory_total"] > 0


# -- the trainer ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), classes=2, train_per_class=4, val_per_class=1)


def small_run(dataset: Path, device: str, **train_settings: object):
    cfg = tiny_config(dataset, device=device, max_steps=2, **train_settings)
    cfg.data.resize, cfg.data.crop = 96, SIZE
    return cfg


def test_training_on_two_slots_repeats_single_device_training(dataset: Path, tmp_path: Path) -> None:
    runs = {}
    for device in ("cpu", "cpu,cpu"):
        cfg = small_run(dataset, device)
        runs[device] = list(train(cfg, RunDir.create(tmp_path / device.replace(",", "_"), cfg)))
    steps = {device: [e for e in events if isinstance(e, StepDone)] for device, events in runs.items()}
    assert [s.loss for s in steps["cpu,cpu"]] == pytest.approx([s.loss for s in steps["cpu"]], rel=1e-5)
    assert all(s.tower_ms is None and s.cross_bytes is None for s in steps["cpu"])
    assert all(len(s.tower_ms) == 2 and s.cross_bytes > 0 for s in steps["cpu,cpu"])
    assert any(e.type == "run_started" and e.device == "cpu,cpu" for e in runs["cpu,cpu"])
    a = load_checkpoint(tmp_path / "cpu" / "checkpoints" / "last.safetensors").tensors
    b = load_checkpoint(tmp_path / "cpu_cpu" / "checkpoints" / "last.safetensors").tensors
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6, msg=key)


def test_trainer_reports_a_bad_device_string(dataset: Path, tmp_path: Path) -> None:
    cfg = small_run(dataset, "cpu,cpu")
    cfg.model.arch = "torchvision"
    events = list(train(cfg, RunDir.create(tmp_path / "run", cfg)))
    assert events[-1].type == "failed" and "single tower" in events[-1].message


# -- feeding a GPU: batches read ahead in a thread -------------------------------------------


def test_prefetched_batches_keep_order_errors_and_stop_cleanly() -> None:
    import itertools
    import threading

    from alexgui.engine.training.background import prefetched as _prefetched

    assert list(_prefetched(iter(range(7)), depth=2)) == list(range(7))
    endless = _prefetched(itertools.count(), depth=2)
    assert [next(endless) for _ in range(4)] == [0, 1, 2, 3]
    endless.close()  # the loop left early (stop, max steps): the producer thread must end
    assert not any(t.name == "alexgui-prefetch" for t in threading.enumerate())

    def failing():
        yield "first"
        raise OSError("cache file vanished")

    got = []
    with pytest.raises(OSError, match="vanished"):
        for item in _prefetched(failing()):
            got.append(item)
    assert got == ["first"]


def test_placing_back_on_one_device_drops_the_two_tower_strategy() -> None:
    model = place_model(paper(), "cpu,cpu")
    assert isinstance(model.placement, TwoTowerPlacement)
    model = place_model(model, "cpu")
    assert not isinstance(model.placement, TwoTowerPlacement)
    assert take_tower_stats(model) == (None, None)

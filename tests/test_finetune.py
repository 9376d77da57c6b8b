"""Fine-tuning (issue 16): a network trained here on two generated classes, fine-tuned onto two others.
Frozen layers stay bit-identical, the new last layer learns the new classes, the checkpoint records its
lineage and keeps the source's preprocessing, and every bad source is refused before anything is written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from alexgui.cli import main
from alexgui.config import RunConfig
from alexgui.engine.events import Failed, Finished, RunStarted
from alexgui.engine.model import zoo
from alexgui.engine.model.networks import build_model
from alexgui.engine.model.torchvision_alexnet import TorchvisionAlexNet
from alexgui.engine.store.checkpoint import load_checkpoint, save_checkpoint, split_prefix
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.init_source import FineTuneError, resolve_init_source
from alexgui.engine.training.loop import train
from tests.finetune_helpers import NEW_CLASSES, make_source_run, new_classes, small
from tests.helpers import make_dataset, make_image, tiny_config

pytestmark = pytest.mark.xdist_group("finetune-source")  # one worker makes the source once

def run_to_end(cfg: RunConfig, out: Path) -> list:
    events = list(train(cfg, RunDir.create(out, cfg)))
    failed = [e for e in events if isinstance(e, Failed)]
    assert not failed, failed[0].message
    assert isinstance(events[-1], Finished)
    return events


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source_run(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_classes(tmp_path_factory.mktemp("target") / "data")


def finetune(source: Path, target: Path, out: Path, mode: str, **train_settings: object) -> tuple[RunConfig, list]:
    settings: dict[str, object] = {"epochs": 3, "lr": 0.0003, **train_settings}
    cfg = tiny_config(target, init=str(source), finetune=mode, **settings)
    cfg.model.arch = "torchvision"  # the source decides: the loop takes the paper network from it
    return cfg, run_to_end(cfg, out)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return split_prefix(load_checkpoint(path).tensors, "model.")


def source_weights(source: Path) -> dict[str, torch.Tensor]:
    return weights(source / "checkpoints" / "best.safetensors")


def test_head_trains_only_the_new_last_layer_and_learns_the_new_classes(source: Path, target: Path, tmp_path: Path) -> None:
    _, events = finetune(source, target, tmp_path / "head", "head")
    before, after = source_weights(source), weights(tmp_path / "head" / "checkpoints" / "last.safetensors")
    assert set(before) == set(after)
    for name in before:
        if name.startswith("fc8."):
            continue
        assert torch.equal(before[name], after[name]), f"{name} moved in a head fine-tune"
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.arch == "paper" and started.class_names == ["leaf", "sun"]
    assert started.trainable_params == 4096 * 2 + 2  # fc8 alone: weights and biases for the two new classes
    assert "a new last layer" in started.start and "trained the last layer" in started.start
    last_epoch = [e for e in events if e.type == "epoch"][-1]
    assert last_epoch.val_top1_err <= 0.25, f"the new head did not learn the new classes: {last_epoch.val_top1_err}"


def test_fc_keeps_the_conv_layers_and_all_moves_every_layer(source: Path, target: Path, tmp_path: Path) -> None:
    before = source_weights(source)
    finetune(source, target, tmp_path / "fc", "fc", epochs=1)
    fc = weights(tmp_path / "fc" / "checkpoints" / "last.safetensors")
    for name in before:
        if ".conv" in name:
            assert torch.equal(before[name], fc[name]), f"{name} moved in an fc fine-tune"
        elif not name.startswith("fc8."):
            assert not torch.equal(before[name], fc[name]), f"{name} did not learn in an fc fine-tune"
    finetune(source, target, tmp_path / "all", "all", epochs=1)
    everything = weights(tmp_path / "all" / "checkpoints" / "last.safetensors")
    for name in before:
        if not name.startswith("fc8."):
            assert not torch.equal(before[name], everything[name]), f"{name} did not move in an 'all' fine-tune"


def test_the_checkpoint_records_its_lineage_and_keeps_the_sources_preprocessing(source: Path, target: Path,
                                                                                tmp_path: Path) -> None:
    finetune(source, target, tmp_path / "run", "head", epochs=1)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    origin = load_checkpoint(source / "checkpoints" / "best.safetensors")
    lineage = ckpt.meta["lineage"]
    assert lineage["source"] == str(source) and lineage["finetune"] == "head" and lineage["head"] == "new"
    assert lineage["arch"] == "paper" and lineage["source_classes"] == 2
    assert lineage["fingerprint"] == resolve_init_source(str(source)).fingerprint
    assert ckpt.meta["class_names"] == ["leaf", "sun"]
    assert ckpt.meta["preprocessing"] == origin.meta["preprocessing"]
    for name, tensor in split_prefix(origin.tensors, "stats.").items():  # the source's mean image and PCA
        assert torch.equal(ckpt.tensors[f"stats.{name}"], tensor)
    saved = RunConfig.from_toml(ckpt.meta["config"])
    assert saved.train.init == str(source) and saved.model.arch == "paper" and saved.data.crop == 64


def test_the_same_classes_keep_the_sources_last_layer(source: Path, tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "same", classes=2, train_per_class=4, val_per_class=1)
    cfg = tiny_config(data, epochs=1, init=str(source), finetune="fc")
    events = run_to_end(cfg, tmp_path / "run")
    assert "its last layer kept" in next(e for e in events if isinstance(e, RunStarted)).start
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors").meta["lineage"]["head"] == "kept"


def test_frozen_layers_are_outside_the_optimiser_and_get_no_gradients(source: Path) -> None:
    from alexgui.engine.training.distributed import SINGLE_PROCESS
    from alexgui.engine.training.setup import trainable

    cfg = small(tiny_config(Path("."), init=str(source), finetune="head", pretrained_lr_scale=0.1))
    src = resolve_init_source(str(source))
    cfg.model = dataclasses.replace(src.model, num_classes=3)
    model, _, _, optimizer, kept = trainable(cfg, None, [torch.device("cpu")], SINGLE_PROCESS, src, ["a", "b", "c"])
    assert not kept
    in_optimiser = {id(p) for g in optimizer.param_groups for p in g["params"]}
    fc8 = {id(p) for m in model.layer_modules("fc8") for p in m.parameters()}
    assert in_optimiser == fc8
    model.train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (id(p) in fc8), name
    cfg.train.finetune = "all"
    model, _, _, optimizer, _ = trainable(cfg, None, [torch.device("cpu")], SINGLE_PROCESS, src, ["a", "b", "c"])
    scales = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    fc8 = {id(p) for m in model.layer_modules("fc8") for p in m.parameters()}
    assert len(scales) == len(list(model.parameters()))
    assert all(scales[i] == 1.0 for i in fc8) and all(s == 0.1 for i, s in scales.items() if i not in fc8)


def test_a_resumed_fine_tune_stays_frozen_and_keeps_its_lineage(source: Path, target: Path, tmp_path: Path) -> None:
    cfg = tiny_config(target, epochs=2, max_steps=2, init=str(source), finetune="head")
    run_to_end(cfg, tmp_path / "run")
    first = weights(tmp_path / "run" / "checkpoints" / "last.safetensors")
    cfg.train.max_steps = 5
    events = list(train(cfg, RunDir.open_for_writing(tmp_path / "run"), resume=True))
    assert isinstance(events[-1], Finished), events[-1]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    after = split_prefix(ckpt.tensors, "model.")
    assert ckpt.meta["step"] == 5 and ckpt.meta["lineage"]["source"] == str(source)
    for name in first:
        assert torch.equal(first[name], after[name]) != name.startswith("fc8."), name


# ---- the command line and bad sources -------------------------------------------------------------


def test_the_command_line_fine_tunes_and_the_export_agrees_with_classify(source: Path, target: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "run"
    assert main(["train", "--data", str(target), "--out", str(out), "--init", str(source), "--finetune", "head",
                 "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "Fine-tuned from" in printed and "8,194 parameters learn" in printed
    assert main(["summary", "--model", str(out)]) == 0
    assert "fine-tuned from" in capsys.readouterr().out
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--model", str(out), "--out", str(onnx)]) == 0
    image = str(target / "val" / "sun" / "000.png")
    capsys.readouterr()
    import json

    assert main(["classify", "--model", str(out), image, "--json"]) == 0
    torch_top = json.loads(capsys.readouterr().out)[0]["top"]
    assert main(["classify", "--model", str(onnx), image, "--json"]) == 0
    onnx_top = json.loads(capsys.readouterr().out)[0]["top"]
    assert [t["label"] for t in torch_top] == [t["label"] for t in onnx_top] and torch_top[0]["label"] in NEW_CLASSES
    assert [t["prob"] for t in torch_top] == pytest.approx([t["prob"] for t in onnx_top], abs=1e-4)


def _refused(args: list[str], out: Path, capsys: pytest.CaptureFixture[str], message: str) -> None:
    assert main(["train", *args, "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists(), "a refused fine-tune left its run folder behind"


def test_bad_sources_are_refused_by_name_before_the_run_folder_is_made(source: Path, target: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    data = ["--data", str(target)]
    _refused([*data, "--init", str(tmp_path / "gone.safetensors")], out, capsys, "gone.safetensors: no such file")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    _refused([*data, "--init", str(damaged)], out, capsys, "damaged.safetensors")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    _refused([*data, "--init", str(onnx)], out, capsys, "model.onnx: an ONNX file cannot be trained further")
    _refused([*data, "--init", str(source), "--arch", "torchvision"], out, capsys,
             "this is the paper network; it cannot be fine-tuned as --arch torchvision")
    _refused([*data, "--finetune", "head"], out, capsys, "argument --finetune: only with --init")
    _refused([*data, "--init", str(source), "--finetune", "middle"], out, capsys, "'middle' is not one of")
    empty_run = tmp_path / "empty-run"
    RunDir.create(empty_run, RunConfig())
    _refused([*data, "--init", str(empty_run)], out, capsys, "the run has no checkpoint yet")


def test_a_dataset_with_one_class_is_refused_with_its_folder(source: Path, tmp_path: Path) -> None:
    data = tmp_path / "one"
    (data / "only").mkdir(parents=True)
    for i in range(3):
        make_image(0, seed=i).save(data / "only" / f"{i}.png")
    cfg = tiny_config(data, init=str(source), finetune="head")
    events = list(train(cfg, RunDir.create(tmp_path / "run", cfg)))
    assert isinstance(events[-1], Failed) and "at least 2 classes" in events[-1].message and str(data) in events[-1].message


# ---- torchvision's ImageNet weights -----------------------------------------------------------------


def _hub_with_torchvision_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state dict of torchvision AlexNet's shapes, written where torch's hub cache keeps it, and the
    registry's checksum made that file's."""
    hub = tmp_path / "hub"
    hub.mkdir()
    torch.manual_seed(0)
    entry = zoo.default_entry()
    path = hub / entry.filename
    torch.save(TorchvisionAlexNet(num_classes=1000).state_dict(), path)
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: hub)
    monkeypatch.setattr(zoo, "default_entry", lambda: dataclasses.replace(entry, sha256=zoo.sha256_file(path)))
    return path


def test_torchvisions_weights_from_the_hub_cache_keep_imagenets_preprocessing(target: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    hub_file = _hub_with_torchvision_weights(tmp_path, monkeypatch)
    out = tmp_path / "run"
    assert main(["train", "--data", str(target), "--out", str(out), "--init", "torchvision", "--finetune", "head",
                 "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--device", "cpu", "--workers", "0"]) == 0
    ckpt = load_checkpoint(out / "checkpoints" / "last.safetensors")
    assert ckpt.meta["arch"] == "torchvision" and ckpt.meta["lineage"]["source"] == "torchvision"
    assert ckpt.meta["lineage"]["path"] == str(hub_file) and ckpt.meta["lineage"]["source_classes"] == 1000
    assert ckpt.meta["preprocessing"]["mode"] == "mean_std" and ckpt.meta["preprocessing"]["pca_source"] == "imagenet"
    original = torch.load(hub_file, weights_only=True)
    after = split_prefix(ckpt.tensors, "model.")
    assert torch.equal(after["features.0.weight"], original["features.0.weight"])
    assert after["classifier.6.weight"].shape == (2, 4096)


def test_torchvision_offline_says_which_file_to_fetch_and_where(target: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: tmp_path / "empty-hub")
    out = tmp_path / "run"
    assert main(["train", "--data", str(target), "--out", str(out), "--init", "torchvision"]) == 2
    err = capsys.readouterr().err
    assert "alexnet-owt-7be5be79.pth" in err and str(tmp_path / "empty-hub") in err
    assert not out.exists()
    with pytest.raises(FineTuneError, match="alexnet-owt"):
        resolve_init_source("torchvision")


def test_a_torchvision_state_dict_file_of_the_wrong_shapes_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "weights.pth"
    state = TorchvisionAlexNet(num_classes=10).state_dict()
    state["features.0.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(state, bad)
    with pytest.raises(FineTuneError, match=r"weights\.pth: .*features\.0\.weight has shape"):
        resolve_init_source(str(bad))
    save_checkpoint(tmp_path / "plain.safetensors", {"x": torch.zeros(1)}, {})
    with pytest.raises(FineTuneError, match="plain.safetensors: not an alexgui checkpoint"):
        resolve_init_source(str(tmp_path / "plain.safetensors"))


# ---- the head fine-tune's fast path: fc7 features computed once -------------------------------------------


def test_a_head_fine_tune_computes_each_images_features_once_and_a_second_run_reads_them(source: Path, target: Path,
                                                                                       tmp_path: Path) -> None:
    from alexgui.engine.events import Progress
    from alexgui.engine.training.head_features import FEATURES_DIR, VIEWS
    from alexgui.paths import cache_dir

    target = new_classes(tmp_path / "photos")  # images of their own: no other test's features in the cache
    cfg = tiny_config(target, epochs=2, init=str(source), finetune="head", lr=0.0003)
    before = set((cache_dir() / FEATURES_DIR).glob("*.train.npy"))
    first = list(train(cfg, RunDir.create(tmp_path / "one", cfg)))
    stages = {e.stage for e in first if isinstance(e, Progress)}
    assert "fc7 features" in stages and "fc7 features (cached)" not in stages
    [train_file] = set((cache_dir() / FEATURES_DIR).glob("*.train.npy")) - before
    feats = np.load(train_file, allow_pickle=False)
    assert feats.shape == (16, VIEWS, 4096) and feats.dtype == np.float16
    # View 0 is the centre crop: the frozen network's own fc7 features of it.
    src = resolve_init_source(str(source))
    model = build_model(src.model).eval()
    model.load_state_dict(src.state)
    from alexgui.engine.data.imageio import load_256

    image = sorted((target / "train" / "leaf").iterdir())[0]
    with torch.no_grad():
        direct = model.forward_features(src.preprocess.center_batch(torch.from_numpy(load_256(image)[None])))[0]
    torch.testing.assert_close(torch.from_numpy(feats[0, 0].astype(np.float32)), direct, rtol=2e-3, atol=2e-3)
    assert not np.array_equal(feats[0, 1], feats[0, 0])  # the other views are other crops

    second = list(train(cfg, RunDir.create(tmp_path / "two", cfg)))
    assert "fc7 features (cached)" in {e.stage for e in second if isinstance(e, Progress)}
    assert isinstance(second[-1], Finished)
    epochs = [[(e.val_top1_err, e.val_loss) for e in run if e.type == "epoch"] for run in (first, second)]
    assert epochs[0] == epochs[1]  # the same run from the cache: the same numbers


def test_a_head_fine_tune_validates_on_ten_crops_from_their_features(source: Path, target: Path, tmp_path: Path) -> None:
    cfg = tiny_config(target, epochs=1, init=str(source), finetune="head", lr=0.0003)
    cfg.data.ten_crop_eval = True
    events = run_to_end(cfg, tmp_path / "run")
    [epoch] = [e for e in events if e.type == "epoch"]
    assert epoch.ten_crop and 0.0 <= epoch.val_top1_err <= 1.0


@pytest.mark.parametrize("mode", ["head", "fc"])
def test_a_fine_tune_split_over_two_devices_keeps_its_frozen_layers(source: Path, target: Path, tmp_path: Path,
                                                                    mode: str) -> None:
    """One paper tower per device (two CPU slots here): the full network's step (the fast path is for one
    device), the same frozen layers."""
    cfg = tiny_config(target, epochs=1, max_steps=2, init=str(source), finetune=mode, lr=0.0003)
    cfg.train.device = "cpu,cpu"
    events = run_to_end(cfg, tmp_path / "run")
    assert next(e for e in events if isinstance(e, RunStarted)).device == "cpu,cpu"
    steps = [e for e in events if e.type == "step"]
    assert all(s.tower_ms is not None and len(s.tower_ms) == 2 for s in steps)  # the towers ran on two slots
    before, after = source_weights(source), weights(tmp_path / "run" / "checkpoints" / "last.safetensors")
    frozen = [n for n in before if ".conv" in n or (mode == "head" and not n.startswith("fc8."))]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)

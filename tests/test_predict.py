"""Predictors: loading every kind of model file, classifying generated images, true classes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from alexgui.config import RunConfig
from alexgui.engine.data.labels import true_class
from alexgui.engine.inference.predict import (
    PredictorError,
    TorchPredictor,
    classify_files,
    expand_inputs,
)
from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.model import zoo
from alexgui.engine.model.torchvision_alexnet import TorchvisionAlexNet
from alexgui.engine.store.rundir import RunDir
from tests.explore_helpers import (
    colour_image,
    train_colour_checkpoint,
    write_colour_folder,
)


@pytest.fixture(scope="module")
def colour_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_colour_checkpoint(tmp_path_factory.mktemp("ckpt") / "colours.safetensors")


@pytest.fixture(scope="module")
def colour_predictor(colour_checkpoint: Path) -> TorchPredictor:
    predictor = load_predictor(str(colour_checkpoint))
    assert isinstance(predictor, TorchPredictor)
    return predictor


def test_checkpoint_classifies_unseen_images(colour_predictor: TorchPredictor, tmp_path: Path) -> None:
    files = write_colour_folder(tmp_path, per_class=3, seed=7)  # different seeds from the fitted ones
    results = list(classify_files(colour_predictor, files, top_k=2))
    assert [r.top[0].label for r in results] == ["red"] * 3 + ["blue"] * 3
    for r in results:
        assert r.error is None and r.ms > 0
        assert r.true_index == colour_predictor.class_names.index(Path(r.path).parent.name)
        assert sum(t.prob for t in r.top) == pytest.approx(1.0, abs=1e-5)
    assert colour_predictor.arch == "paper" and len(colour_predictor.fingerprint) == 16


def test_ten_crops_average_the_softmax(colour_predictor: TorchPredictor) -> None:
    u8 = np.stack([np.asarray(colour_image(c, 5).resize((256, 256))) for c in ("red", "blue")])
    probs, feats = colour_predictor.predict_u8(u8, ten_crop=True)
    assert probs.shape == (2, 2) and feats.shape == (2, 4096)
    assert probs.argmax(1).tolist() == [0, 1]
    # the same average computed by hand from the ten crops
    crops = colour_predictor.preprocess.ten_crop_batch(torch.from_numpy(u8))
    with torch.no_grad():
        manual = torch.stack([torch.softmax(colour_predictor.model(c), 1) for c in crops]).mean(0)
    assert np.allclose(probs, manual.numpy(), atol=1e-5)


def test_a_broken_file_is_reported_and_the_rest_classified(colour_predictor: TorchPredictor, tmp_path: Path) -> None:
    good = write_colour_folder(tmp_path / "imgs", per_class=1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    results = list(classify_files(colour_predictor, [good[0], broken, good[1]]))
    assert [r.error is None for r in results] == [True, False, True]
    assert results[1].to_json() == {"path": str(broken), "error": results[1].error}
    assert set(results[0].to_json()) == {"path", "top", "ms", "true_index"}


def test_run_folder_uses_its_best_checkpoint(colour_checkpoint: Path, tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run", RunConfig())
    with pytest.raises(PredictorError, match="no checkpoint yet"):
        load_predictor(str(run.path))
    run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    run.last_checkpoint.symlink_to(colour_checkpoint)
    predictor = load_predictor(str(run.path))
    assert predictor.source == str(run.last_checkpoint)


def test_torchvision_state_dict_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TorchvisionAlexNet(num_classes=3)
    path = tmp_path / "tv.pth"
    torch.save(model.state_dict(), path)
    predictor = load_predictor(str(path))
    assert predictor.arch == "torchvision" and predictor.class_names == ["class 0", "class 1", "class 2"]
    probs, feats = predictor.predict_u8(np.zeros((1, 256, 256, 3), np.uint8))
    assert probs.shape == (1, 3) and feats.shape == (1, 4096)


def test_load_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PredictorError, match="missing.safetensors: no such file"):
        load_predictor(str(tmp_path / "missing.safetensors"))
    odd = tmp_path / "model.xyz"
    odd.write_text("x")
    with pytest.raises(PredictorError, match=r"model\.xyz: unknown model file type"):
        load_predictor(str(odd))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(PredictorError, match="junk.safetensors"):
        load_predictor(str(junk))
    with pytest.raises(PredictorError, match="not an alexgui run"):
        load_predictor(str(tmp_path))
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: tmp_path / "hub")
    with pytest.raises(PredictorError, match="alexnet-owt-7be5be79.pth") as info:
        load_predictor("torchvision")
    assert str(tmp_path / "hub") in str(info.value)


def test_onnx_files_go_to_their_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alexgui.engine.inference import sources

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx")
    monkeypatch.setitem(sources.BACKENDS, ".onnx", "alexgui.engine.no_such_backend:load")
    with pytest.raises(PredictorError, match=r"m\.onnx: \.onnx models need"):
        load_predictor(str(onnx))


def test_true_class_from_folder_or_wnid() -> None:
    names = ["tabby cat", "n01440764", "dog"]
    assert true_class("/a/Tabby_Cat/x.jpg", names) == 0
    assert true_class("/a/b/n01440764_123.JPEG", names) == 1
    assert true_class("/a/n01440764/ILSVRC2012_val_0001.JPEG", names) == 1
    assert true_class("/a/b/photo.jpg", names) is None
    entry = zoo.default_entry()
    assert true_class("/x/n02102040_77.JPEG", entry.categories, entry.wnids) == 217
    assert true_class("/x/n99999999.JPEG", entry.categories, entry.wnids) is None


def test_folders_expand_to_their_images(tmp_path: Path) -> None:
    files = write_colour_folder(tmp_path / "g", per_class=2)
    (tmp_path / "g" / "README.txt").write_text("x")
    (tmp_path / "g" / ".hidden.png").write_bytes(b"")
    listed = expand_inputs([tmp_path / "g", tmp_path / "g" / "README.txt"])
    assert sorted(listed[:-1]) == sorted(map(str, files)) and listed[-1].endswith("README.txt")


def test_a_cancelled_download_is_a_cancellation_not_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from alexgui.errors import Cancelled

    def cancelled(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise zoo.DownloadCancelled("download of https://example.invalid/w.pth cancelled after 10 bytes")

    monkeypatch.setattr(zoo, "ensure_weights", cancelled)
    with pytest.raises(Cancelled) as info:
        load_predictor("torchvision", allow_download=True)
    assert not isinstance(info.value, PredictorError)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.timeout(60)  # a reader that opened the pipe would wait for a writer for ever
@pytest.mark.parametrize("name", ["model.safetensors", "model.pth", "model.onnx"])
def test_a_named_pipe_is_never_opened_as_a_model(name: str, tmp_path: Path) -> None:
    from alexgui.engine.inference.onnx_cache import load_onnx_backend

    pipe = tmp_path / name
    os.mkfifo(pipe)
    for load in (load_predictor, load_onnx_backend):
        if load is load_onnx_backend and name != "model.onnx":
            continue  # the ONNX backend exports other kinds through load_predictor, checked above
        with pytest.raises(PredictorError, match=r"model\.\w+: a named pipe \(FIFO\), not a regular file"):
            load(pipe)
    with pytest.raises(PredictorError, match="a named pipe"):
        TorchPredictor.from_checkpoint(pipe)  # a run folder's checkpoint comes this way


def test_an_empty_name_is_neither_the_current_folder_nor_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.explore_helpers import MeanColourPredictor

    monkeypatch.chdir(tmp_path)
    write_colour_folder(tmp_path, per_class=1)  # what Path("") would have listed
    assert expand_inputs([""]) == [""]
    (result,) = classify_files(MeanColourPredictor(), [""])
    assert (result.path, result.error) == ("", "an empty file name")
    with pytest.raises(PredictorError, match="no model given"):
        load_predictor(" ")

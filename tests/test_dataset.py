"""Class folders, the seeded split, the pre-flight and batches."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexgui.config import DataConfig
from alexgui.engine.data import dataset
from alexgui.engine.data.dataset import (
    DatasetError,
    ImageSet,
    prepare_dataset,
    scan_folder,
)
from alexgui.errors import Cancelled

COLOURS = {"cats": (220, 30, 30), "dogs": (30, 220, 30), "owls": (30, 30, 220)}


def _image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _flat(root: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        for i in range(n):
            _image(root / name / f"{i:03d}.png", COLOURS[name])
    return root


def _cfg(root: Path, **overrides: object) -> DataConfig:
    values = {"data": str(root), "resize": 32, "cache": False, "val_fraction": 0.25}
    values.update(overrides)
    return DataConfig(**values)  # type: ignore[arg-type]


# -- scan_folder ---------------------------------------------------------------------------


def test_train_val_layout(tmp_path: Path) -> None:
    _flat(tmp_path / "train", {"cats": 3, "dogs": 2})
    _flat(tmp_path / "val", {"dogs": 1, "cats": 1})
    index = scan_folder(tmp_path, 0.5, 0)
    assert index.class_names == ["cats", "dogs"]
    assert [(Path(s.path).parent.name, s.label) for s in index.train] == [("cats", 0)] * 3 + [("dogs", 1)] * 2
    assert sorted((Path(s.path).parent.parent.name, s.label) for s in index.val) == [("val", 0), ("val", 1)]


def test_an_empty_class_folder_is_said_not_dropped_in_silence(tmp_path: Path) -> None:
    _flat(tmp_path, {"cats": 2, "dogs": 2})
    (tmp_path / "owls").mkdir()  # a copy that went wrong
    index = scan_folder(tmp_path, 0.5, 0)
    assert index.class_names == ["cats", "dogs"]
    assert [(Path(s.path).name, s.reason) for s in index.skipped] == [
        ("owls", "no files in this class folder: not a class (add images, or remove the folder)")
    ]
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    _image(outside, COLOURS["cats"])
    (tmp_path / "owls" / "elsewhere.png").symlink_to(outside)  # a link out of the dataset: skipped, said once
    reasons = [(Path(s.path).name, s.reason) for s in scan_folder(tmp_path, 0.5, 0).skipped]
    assert len(reasons) == 1 and reasons[0][0] == "elsewhere.png" and "add images" not in reasons[0][1], reasons


def test_train_without_val_is_split(tmp_path: Path) -> None:
    _flat(tmp_path / "train", {"cats": 4, "dogs": 4})
    index = scan_folder(tmp_path, 0.25, 0)
    assert len(index.train) == 6 and len(index.val) == 2
    assert sorted(s.label for s in index.val) == [0, 1]


def test_val_class_unknown_to_train(tmp_path: Path) -> None:
    _flat(tmp_path / "train", {"cats": 2, "dogs": 2})
    _flat(tmp_path / "val", {"owls": 1})
    with pytest.raises(DatasetError, match="class 'owls' has no folder in .*train"):
        scan_folder(tmp_path, 0.1, 0)


def test_flat_split_is_stratified_and_deterministic(tmp_path: Path) -> None:
    _flat(tmp_path, {"cats": 20, "dogs": 8, "owls": 2})
    index = scan_folder(tmp_path, 0.25, split_seed=7)
    val_per_class = np.bincount([s.label for s in index.val], minlength=3)
    assert val_per_class.tolist() == [5, 2, 1]  # round(n/4), at least 1 for a class of 2
    assert len(index.train) + len(index.val) == 30
    assert not {s.path for s in index.train} & {s.path for s in index.val}

    again = scan_folder(tmp_path, 0.25, split_seed=7)
    assert [s.path for s in again.val] == [s.path for s in index.val]
    other = scan_folder(tmp_path, 0.25, split_seed=8)
    assert [s.path for s in other.val] != [s.path for s in index.val]


def test_split_of_other_classes_survives_a_new_class(tmp_path: Path) -> None:
    _flat(tmp_path, {"cats": 12, "dogs": 12})
    before = {s.path for s in scan_folder(tmp_path, 0.25, 3).val}
    _flat(tmp_path, {"owls": 4})
    after = {s.path for s in scan_folder(tmp_path, 0.25, 3).val}
    assert before <= after


def test_files_found_recursively_hidden_ignored(tmp_path: Path) -> None:
    _flat(tmp_path, {"cats": 2, "dogs": 2})
    _image(tmp_path / "cats" / "deeper" / "more" / "x.png", COLOURS["cats"])
    _image(tmp_path / "cats" / ".hidden.png", COLOURS["cats"])
    _image(tmp_path / "cats" / ".thumbs" / "y.png", COLOURS["cats"])
    _image(tmp_path / ".trash" / "z.png", COLOURS["cats"])
    (tmp_path / "cats" / "notes.txt").write_text("a candidate too; the pre-flight decides")
    (tmp_path / "README.txt").write_text("not inside a class folder")
    index = scan_folder(tmp_path, 0.5, 0)
    assert index.class_names == ["cats", "dogs"]
    cats = sorted(Path(s.path).name for s in index.train + index.val if s.label == 0)
    assert cats == ["000.png", "001.png", "notes.txt", "x.png"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "folder not found"),
        (lambda root: root.write_text("x"), "is a file, not a folder"),
        (lambda root: root.mkdir(), "no class folders with files"),
        (lambda root: (root / "empty_class").mkdir(parents=True), "no class folders with files"),
        (lambda root: _flat(root, {"cats": 3}), "needs at least 2 classes; found only 'cats' in "),
        (lambda root: _flat(root / "train", {"cats": 3}), "needs at least 2 classes; found only 'cats' in "),
    ],
)
def test_scan_errors_name_the_folder(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DatasetError) as caught:
        scan_folder(root, 0.1, 0)
    assert message in str(caught.value)
    assert str(root) in str(caught.value)


def test_empty_val_folder_is_an_error(tmp_path: Path) -> None:
    _flat(tmp_path / "train", {"cats": 2, "dogs": 2})
    (tmp_path / "val").mkdir()
    with pytest.raises(DatasetError, match="val: no class folders with files"):
        scan_folder(tmp_path, 0.1, 0)


# -- prepare_dataset -----------------------------------------------------------------------


def _with_bad_files(root: Path) -> dict[str, str]:
    _flat(root, {"cats": 4, "dogs": 4})
    (root / "cats" / "empty.jpg").touch()
    (root / "dogs" / "text.jpg").write_text("hello")
    good = root / "cats" / "000.png"
    data = good.read_bytes()
    (root / "cats" / "cut.png").write_bytes(data[: len(data) // 2])
    return {
        "empty.jpg": "empty file",
        "text.jpg": "not an image (could not identify format)",
        "cut.png": "truncated or corrupt image data",
    }


@pytest.mark.parametrize("cache", [False, True])
def test_prepare_excludes_bad_files_with_reasons(tmp_path: Path, cache: bool) -> None:
    root = tmp_path / "data"
    expected = _with_bad_files(root)
    stages: list[tuple[str, int, int]] = []
    prepared = prepare_dataset(_cfg(root, cache=cache), tmp_path / "cache", progress=lambda *a: stages.append(a))
    assert {Path(s.path).name: s.reason for s in prepared.skipped} == expected
    assert len(prepared.train) + len(prepared.val) == 8
    assert prepared.class_names == ["cats", "dogs"]
    assert prepared.train.cached is cache and (prepared.cache_file is not None) is cache
    assert stages[-1] == ("decoding", 11, 11)
    assert ("decoding", 0, 11) in stages
    for i in range(len(prepared.train)):
        image = prepared.train.get(i)
        assert image.shape == (32, 32, 3)
        assert tuple(image[16, 16]) == COLOURS[prepared.class_names[prepared.train.labels[i]]]


def test_prepare_fails_when_too_little_survives(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _flat(root, {"cats": 3})
    for i in range(3):
        (root / "dogs" / f"{i}.jpg").parent.mkdir(exist_ok=True)
        (root / "dogs" / f"{i}.jpg").write_text("not an image")
    with pytest.raises(DatasetError, match=r"at least 2 classes; 1 class\(es\) have usable images \(3 file"):
        prepare_dataset(_cfg(root), None)


def test_prepare_fails_without_validation_images(tmp_path: Path) -> None:
    _flat(tmp_path / "train", {"cats": 2, "dogs": 2})
    (tmp_path / "val" / "cats").mkdir(parents=True)
    (tmp_path / "val" / "cats" / "bad.png").write_text("nope")
    with pytest.raises(DatasetError, match="no usable validation images"):
        prepare_dataset(_cfg(tmp_path), None)


def test_prepare_can_be_cancelled(tmp_path: Path) -> None:
    _flat(tmp_path, {"cats": 3, "dogs": 3})
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        prepare_dataset(_cfg(tmp_path, cache=True), tmp_path / "cache", stop=stop)
    leftovers = list((tmp_path / "cache").rglob("*.u8")) + list((tmp_path / "cache").rglob("*.json"))
    assert leftovers == []


def test_cancel_during_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _flat(tmp_path, {"cats": 20, "dogs": 20})
    stop = threading.Event()
    real = dataset.load_256
    calls = []

    def slow_then_stop(path: str, size: int = 256) -> np.ndarray:
        calls.append(path)
        if len(calls) == 3:
            stop.set()
        return real(path, size)

    monkeypatch.setattr(dataset, "load_256", slow_then_stop)
    with pytest.raises(Cancelled):
        prepare_dataset(_cfg(tmp_path, cache=True), tmp_path / "cache", stop=stop)
    assert len(calls) < 40
    assert not any(p.suffix in (".u8", ".json") for p in (tmp_path / "cache").rglob("*"))


def test_demo_dataset_is_fetched_from_demo_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _flat(tmp_path / "demo-data", {"cats": 4, "dogs": 4})
    asked: list[Path] = []

    def ensure_demo_dataset(cache_root: Path) -> Path:
        asked.append(cache_root)
        return made

    fake = types.ModuleType("alexgui.engine.data.demo")
    fake.ensure_demo_dataset = ensure_demo_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "alexgui.engine.data.demo", fake)
    prepared = prepare_dataset(_cfg(Path("demo")), tmp_path / "cache")
    assert asked == [tmp_path / "cache"]
    assert prepared.root == made.resolve()


# -- batches -------------------------------------------------------------------------------


@pytest.mark.parametrize("cache", [False, True])
def test_batches_shapes_order_and_labels(tmp_path: Path, cache: bool) -> None:
    _flat(tmp_path, {"cats": 5, "dogs": 5, "owls": 5})
    prepared = prepare_dataset(_cfg(tmp_path, cache=cache), tmp_path / "cache")
    train = prepared.train
    order = np.random.default_rng(0).permutation(len(train))
    seen: list[int] = []
    for images, labels in train.batches(order, 4, workers=0):
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert images.shape[1:] == (32, 32, 3) and images.shape[0] == labels.shape[0] <= 4
        for image, label in zip(images, labels, strict=True):
            assert tuple(image[16, 16].tolist()) == COLOURS[prepared.class_names[int(label)]]
        seen.extend(labels.tolist())
    assert seen == train.labels[order].tolist()


def test_cached_batches_are_writable_tensors(tmp_path: Path) -> None:
    _flat(tmp_path, {"cats": 2, "dogs": 2})
    prepared = prepare_dataset(_cfg(tmp_path, cache=True, val_fraction=0.5), tmp_path / "cache")
    images, _ = next(prepared.train.batches(np.arange(2), 2))
    images += 1  # a read-only memory-map view would raise here
    assert tuple(prepared.train.get(0)[0, 0]) == COLOURS[prepared.class_names[prepared.train.labels[0]]]


def test_batches_with_a_worker_process(tmp_path: Path) -> None:
    _flat(tmp_path, {"cats": 3, "dogs": 3})
    prepared = prepare_dataset(_cfg(tmp_path, cache=False, val_fraction=0.4), tmp_path / "cache")
    batches = list(prepared.train.batches(np.arange(len(prepared.train)), 2, workers=1))
    assert sum(len(labels) for _, labels in batches) == len(prepared.train)
    assert all(images.shape[1:] == (32, 32, 3) for images, _ in batches)


def test_file_deleted_after_preflight_is_dropped_and_recorded(tmp_path: Path) -> None:
    _flat(tmp_path, {"cats": 4, "dogs": 4})
    prepared = prepare_dataset(_cfg(tmp_path, cache=False), tmp_path / "cache")
    train = prepared.train
    gone = train.paths[1]
    Path(gone).unlink()
    batches = list(train.batches(np.arange(len(train)), 3))
    assert sum(len(labels) for _, labels in batches) == len(train) - 1
    assert [(f.path, f.reason) for f in train.failed] == [(gone, "file not found")]
    # A batch made only of failed files is left out rather than yielded empty; a file that keeps
    # failing is reported once.
    assert list(train.batches(np.array([1]), 3)) == []
    assert len(train.failed) == 1


def test_image_set_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        ImageSet(["a", "b"], [0])
    with pytest.raises(ValueError, match="batch_size"):
        ImageSet(["a"], [0]).batches(np.arange(1), 0)

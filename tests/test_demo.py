"""The demo dataset: made once, atomically, deterministic, right shapes, classes that can be told apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexgui.engine.data import demo
from alexgui.engine.data.demo import CLASSES, DemoError, ensure_demo_dataset

SMALL = {"train_per_class": 8, "val_per_class": 6}


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_demo_dataset(tmp_path_factory.mktemp("demo-a"), **SMALL)


def test_layout_counts_and_images(small_demo: Path) -> None:
    assert (small_demo / "README.txt").read_text(encoding="utf-8").startswith("alexgui demo dataset")
    assert (small_demo / "manifest.json").is_file()
    for split, n in (("train", 8), ("val", 6)):
        assert sorted(p.name for p in (small_demo / split).iterdir()) == sorted(CLASSES)
        for name in CLASSES:
            files = sorted((small_demo / split / name).glob("*.jpg"))
            assert len(files) == n
            with Image.open(files[0]) as im:
                assert im.size == (256, 256) and im.mode == "RGB"
    # No temporary folder left next to it.
    assert [p.name for p in small_demo.parent.iterdir()] == [small_demo.name]


def test_deterministic_for_the_seed(small_demo: Path, tmp_path: Path) -> None:
    again = ensure_demo_dataset(tmp_path, **SMALL)
    assert _files(again) == _files(small_demo)
    other_seed = ensure_demo_dataset(tmp_path, seed=7, **SMALL)
    assert other_seed != again
    a = np.asarray(Image.open(again / "train/checkerboard/checkerboard_0000.jpg"))
    b = np.asarray(Image.open(other_seed / "train/checkerboard/checkerboard_0000.jpg"))
    assert not np.array_equal(a, b)


def test_second_call_does_not_regenerate(small_demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated")

    monkeypatch.setattr(demo, "_write_dataset", fail)
    assert ensure_demo_dataset(small_demo.parent, **SMALL) == small_demo


def test_interrupted_generation_leaves_nothing(tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done >= 3 * 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure_demo_dataset(tmp_path, progress=interrupt, train_per_class=4, val_per_class=2)
    assert list(tmp_path.iterdir()) == []
    seen: list[tuple[int, int]] = []
    path = ensure_demo_dataset(tmp_path, progress=lambda d, t: seen.append((d, t)), train_per_class=4, val_per_class=2)
    assert seen[-1] == (60, 60) and path.is_dir()


def test_unfinished_folder_is_reported_not_used(tmp_path: Path) -> None:
    (tmp_path / demo.demo_folder_name(**SMALL) / "train").mkdir(parents=True)
    with pytest.raises(DemoError, match="manifest"):
        ensure_demo_dataset(tmp_path, **SMALL)


def _features(path: Path) -> np.ndarray:
    """Mean and spread of colour plus edge energy per orientation, on a 64x64 copy."""
    with Image.open(path) as im:
        x = np.asarray(im.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    g = x.mean(axis=2)
    dx, dy = np.abs(np.diff(g, axis=1)).mean(), np.abs(np.diff(g, axis=0)).mean()
    d1, d2 = np.abs(g[1:, 1:] - g[:-1, :-1]).mean(), np.abs(g[1:, :-1] - g[:-1, 1:]).mean()
    return np.concatenate([x.mean(axis=(0, 1)), x.std(axis=(0, 1)), [dx, dy, d1, d2]])


def test_classes_are_distinguishable(small_demo: Path) -> None:
    def load(split: str) -> tuple[np.ndarray, np.ndarray]:
        feats, labels = [], []
        for label, name in enumerate(CLASSES):
            for p in sorted((small_demo / split / name).glob("*.jpg")):
                feats.append(_features(p))
                labels.append(label)
        return np.array(feats), np.array(labels)

    xtr, ytr = load("train")
    xva, yva = load("val")
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 1e-9
    xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    centres = np.stack([xtr[ytr == c].mean(axis=0) for c in range(len(CLASSES))])
    pred = np.argmin(((xva[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    accuracy = float((pred == yva).mean())
    assert accuracy > 0.5, f"nearest class mean reaches only {accuracy:.0%} (chance is 10%)"
    # Orientation alone separates these two (same colours): vertical stripes have more x-gradient.
    v, h = list(CLASSES).index("stripes_vertical_warm"), list(CLASSES).index("stripes_horizontal_warm")
    raw = load("val")[0]
    assert np.all(raw[yva == v, 6] > raw[yva == v, 7]) and np.all(raw[yva == h, 7] > raw[yva == h, 6])


@pytest.mark.slow
def test_default_dataset(tmp_path: Path) -> None:
    path = ensure_demo_dataset(tmp_path)
    assert path == tmp_path / "demo-v1"
    for split, n in (("train", demo.TRAIN_PER_CLASS), ("val", demo.VAL_PER_CLASS)):
        assert sum(1 for _ in (path / split).rglob("*.jpg")) == n * len(CLASSES)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert size < 60 * 2**20

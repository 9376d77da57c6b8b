"""The suite's images: the real folder on the GPU machine, a small generated one for the dry run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alexgui.engine.data.demo import ensure_demo_dataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# The dry run's generated set: 2 training and 1 validation image for each of the demo's 10 classes.
DRY_TRAIN_PER_CLASS = 2
DRY_VAL_PER_CLASS = 1


class DataProblem(ValueError):
    """A data folder the suite cannot use; the message names it and says why."""


def generated_dataset(cache_root: Path) -> Path:
    """The engine's own demo images (engine/data/demo.py), as few as every section needs."""
    return ensure_demo_dataset(cache_root, train_per_class=DRY_TRAIN_PER_CLASS, val_per_class=DRY_VAL_PER_CLASS)


def check_dataset(root: Path) -> dict[str, Any]:
    """Count classes and images of a train/ + val/ class-folder tree; DataProblem when it is not one."""
    if not root.is_dir():
        raise DataProblem(f"{root}: no such folder (copy the data there first; see benchmarks/README.md)")
    counts: dict[str, int] = {}
    classes: set[str] = set()
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise DataProblem(f"{root}: has no {split}/ folder of class folders")
        n = 0
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = [f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
            if files:
                classes.add(class_dir.name)
                n += len(files)
        counts[split] = n
    if len(classes) < 2 or counts["train"] == 0 or counts["val"] == 0:
        raise DataProblem(f"{root}: needs images of at least 2 classes in train/ and val/ (found {counts})")
    return {"path": str(root), "classes": len(classes), "train_images": counts["train"], "val_images": counts["val"]}


def first_val_image(root: Path) -> Path:
    """A JPEG (or other image) from val/, for the file-to-top-5 timing."""
    for class_dir in sorted(p for p in (root / "val").iterdir() if p.is_dir()):
        for f in sorted(class_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                return f
    raise DataProblem(f"{root}: no image in val/")

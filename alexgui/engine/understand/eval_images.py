"""Which images an evaluation looks at, and which class of the model each one is.

A folder with one subfolder per class (its `val/` when it has `train/` and `val/`), matched to the
model's classes by folder name (case, spaces, hyphens and underscores do not matter) or by an
ImageNet wnid in the folder's name (a model whose class names are wnids, or torchvision's 1000 classes
with their wnids). Folders that name no class of the model are listed and left out; files the folder
walk will not take (special files, link loops, links out of the folder) are skipped with the reason,
as in training. Or a training run's own validation images: the same split its training used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alexgui.engine.data.labels import class_of_folder
from alexgui.engine.data.walk import DatasetError, FolderWalk, Skipped, display_path
from alexgui.errors import AlexguiError


class EvaluationError(AlexguiError):
    """A folder that cannot be evaluated with this model; the message names the folder and the problem."""


@dataclass
class EvaluationSet:
    folder: str  # the folder whose class folders are evaluated (printable)
    items: list[tuple[str, int]]  # (image path, index of its class among the model's classes)
    skipped: list[Skipped] = field(default_factory=list)
    unknown_classes: list[str] = field(default_factory=list)  # class folders that name no class of the model


def evaluation_folder(data: str | os.PathLike[str]) -> Path:
    """The folder of class folders to evaluate: `val/` when `data` has `train/` and `val/`, else `data`."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise EvaluationError(root, "folder not found" if not root.exists() else "is a file, not a folder of class folders")
    if (root / "train").is_dir() and (root / "val").is_dir():
        return root / "val"
    return root


def find_evaluation_images(
    data: str | os.PathLike[str], class_names: Sequence[str], wnids: Sequence[str] | None = None,
    follow_links: bool = False,
) -> EvaluationSet:
    """Every image file below the class folders of `data` (its val/ when it has train/ and val/), labelled
    with the model's class its folder names. EvaluationError when no class folder names a class of the model."""
    folder = evaluation_folder(data)
    walk = FolderWalk(folder.resolve(), links_out=follow_links)
    try:
        classes = walk.class_folders(folder.resolve())
    except DatasetError as e:
        raise EvaluationError(str(e)) from None
    items: list[tuple[str, int]] = []
    unknown: list[str] = []
    matched: list[tuple[int, Path]] = []
    for name, path in classes:
        index = class_of_folder(name, class_names, wnids)
        if index is None:
            unknown.append(display_path(name))
        else:
            matched.append((index, path))
    for index, path in matched:  # after every class folder is claimed (FolderWalk's rule)
        items += [(p, index) for p in walk.files_below(path)]
    if not matched:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        some = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
        raise EvaluationError(
            display_path(folder),
            (f"no class folder names a class of the model (folders: {shown}; the model's classes: {some})"
             if unknown else "no class folders (expected one subfolder of images per class)"),
        )
    return EvaluationSet(display_path(folder), items, list(walk.skipped), unknown)


def run_validation_images(run_dir: str | os.PathLike[str], class_names: Sequence[str]) -> EvaluationSet:
    """A training run's validation images: the same split its training made (its data's val/ folder, or
    the seeded share of each class held out), labelled with the model's classes by name."""
    from alexgui.engine.data.dataset import scan_folder
    from alexgui.engine.data.demo import ensure_demo_dataset
    from alexgui.engine.store.rundir import RunDir
    from alexgui.paths import cache_dir

    cfg = RunDir.open(run_dir).config()
    data = ensure_demo_dataset(cache_dir()) if cfg.data.data == "demo" else Path(cfg.data.data)
    try:
        index = scan_folder(data, cfg.data.val_fraction, cfg.data.split_seed, links_out=cfg.data.follow_links)
    except DatasetError as e:
        raise EvaluationError(str(e)) from None
    items: list[tuple[str, int]] = []
    unknown: set[str] = set()
    for sample in index.val:
        name = index.class_names[sample.label]
        model_index = class_of_folder(name, class_names)
        if model_index is None:
            unknown.add(name)
        else:
            items.append((sample.path, model_index))
    if not items:
        raise EvaluationError(display_path(data), "the run's validation split holds no image of the model's classes")
    shown = display_path(data / "val") if (data / "val").is_dir() else f"{display_path(data)} (the run's validation split)"
    return EvaluationSet(shown, items, list(index.skipped), sorted(unknown))

"""The true class of an image file, when its name or folder tells it.

Two conventions cover most collections people have:
- class folders (`.../tabby/cat1.jpg`): the parent folder's name is a class name of the model;
- ImageNet file names (`n02123045_1234.JPEG`, `ILSVRC2012_val_..._n02123045.JPEG`) or wnid folders
  (`val/n02123045/...`): a WordNet id, matched against the model's class names when those are wnids
  (a model trained on an ImageNet-style folder), else against the model's wnid list (torchvision's
  1000 ImageNet classes carry one in the model zoo registry).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

WNID = re.compile(r"(?<![0-9a-z])n\d{8}(?!\d)")


def normalise_label(name: str) -> str:
    """Compare class names loosely: case, underscores, hyphens and repeated spaces do not matter."""
    return " ".join(re.split(r"[\s_\-]+", name.strip().lower()))


def _by_wnid(text: str, by_name: dict[str, int], wnids: Sequence[str] | None) -> int | None:
    """The class an ImageNet wnid in `text` names: among class names that are wnids, else the wnid list."""
    for wnid in WNID.findall(text.lower()):
        if wnid in by_name:
            return by_name[wnid]
        if wnids is not None and wnid in wnids:
            return list(wnids).index(wnid)
    return None


def _names(class_names: Sequence[str]) -> dict[str, int]:
    return {normalise_label(c): i for i, c in enumerate(class_names)}


def true_class(path: str | Path, class_names: Sequence[str], wnids: Sequence[str] | None = None) -> int | None:
    """The index into class_names of the class `path` belongs to, or None when nothing says."""
    p = Path(path)
    by_name = _names(class_names)
    parent = p.parent.name
    if parent and normalise_label(parent) in by_name:
        return by_name[normalise_label(parent)]
    for text in (p.stem, parent):
        found = _by_wnid(text, by_name, wnids)
        if found is not None:
            return found
    return None


def class_of_folder(name: str, class_names: Sequence[str], wnids: Sequence[str] | None = None) -> int | None:
    """The class a class folder called `name` holds: its name, else an ImageNet wnid in it; or None."""
    by_name = _names(class_names)
    if normalise_label(name) in by_name:
        return by_name[normalise_label(name)]
    return _by_wnid(name, by_name, wnids)

"""Which model is loaded, in words: a run folder and its checkpoint, torchvision's ImageNet weights, an
ONNX file (and the model it was exported from), for every place that shows the explorer's model
(Classify, Retrieval, Export, the log).

Two runs both have a `best.safetensors`: the file name alone does not say which model is loaded, so a
checkpoint inside a run folder is named by the run ("run-0412 / best.safetensors"); the full path goes
in the tooltip. Class names that are ImageNet WordNet ids get their readable names here as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alexgui.engine.model import zoo

if TYPE_CHECKING:  # the engine's inference module imports torch: only its type is needed here
    from alexgui.engine.inference.predict import Predictor

TORCHVISION_TITLE = "torchvision ImageNet AlexNet"


def run_folder_of(path: Path) -> Path | None:
    """The run folder a checkpoint belongs to (RUN/checkpoints/FILE), or the path itself when it is one."""
    from alexgui.engine.store.rundir import is_run_dir  # here: run directories import torch (checkpoints)

    if is_run_dir(path):
        return path
    for parent in list(path.parents)[:2]:  # RUN/checkpoints/best.safetensors: two levels up at most
        if is_run_dir(parent):
            return parent
    return None


def source_title(source: str) -> str:
    """A short name for where a model came from; the full path is `source` itself."""
    if not source:
        return ""
    if source in zoo.ALIASES:
        return TORCHVISION_TITLE
    path = Path(source)
    try:
        if path.name == zoo.default_entry().filename:
            return f"{TORCHVISION_TITLE} ({path.name})"
    except zoo.ZooError:
        pass  # no registry: the file is named as any other
    run = run_folder_of(path)
    if run is not None:
        return run.name if run == path else f"{run.name} / {path.name}"
    if path.parent.name == "checkpoints" and path.parent.parent.name:  # a run's layout, read before it is on disk
        return f"{path.parent.parent.name} / {path.name}"
    return f"{path.parent.name} / {path.name}" if path.parent.name else path.name


def model_title(predictor: Predictor) -> str:
    """"run-0412 / best.safetensors · paper · 10 classes"; an ONNX model made from a PyTorch one is
    named by that model (the cached ONNX file's own name says nothing to a user)."""
    exported_from = str(getattr(predictor, "exported_from", "") or "")
    name = source_title(exported_from or predictor.source)
    if exported_from:
        name += " on ONNX Runtime"
    return f"{name} · {predictor.arch} · {len(predictor.class_names)} classes"


def model_details(predictor: Predictor) -> str:
    """The tooltip: full paths and the weights' fingerprint."""
    lines = [predictor.source]
    exported_from = str(getattr(predictor, "exported_from", "") or "")
    if exported_from:
        lines = [exported_from, f"running as {predictor.source}"]
    lines.append(f"{predictor.arch} · {len(predictor.class_names)} classes · fingerprint {predictor.fingerprint}")
    return "\n".join(lines)


def class_label(name: str) -> str:
    """A class name for display: an ImageNet WordNet id gets its readable name (see zoo.readable_class)."""
    return zoo.readable_class(name)


def short_class_label(name: str) -> str:
    """The readable name alone ("Shih-Tzu" for n02086240), where room is short (the probability bars)."""
    return zoo.imagenet_names().get(name.strip().lower(), name)

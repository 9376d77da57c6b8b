"""How good is a model on a labelled folder, and where does it fail.

`evaluate` streams the images through a Predictor in batches (decoded with load_256 and preprocessed by
the predictor, exactly as `alexgui classify` does image by image), keeping per image only its top-5
and the numbers a report needs, so memory does not grow with the images. The report has the paper's
top-1 and top-5 error (centre crop or ten crops), the confusion matrix, per-class precision, recall and
errors, and the images with the highest loss.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.data.walk import Skipped, display_path
from alexgui.engine.inference.predict import Predictor
from alexgui.engine.training.background import prefetched
from alexgui.engine.understand.eval_images import EvaluationSet
from alexgui.errors import Cancelled

TOP = 5  # the paper's top-5
DEFAULT_WORST = 16
FULL_CONFUSION_UP_TO = 100  # classes; a bigger model's matrix keeps the classes that occur (see EvaluationReport.classes)
_EPS = 1e-12  # -log(0) would be infinite: a probability below this counts as this

Progress = Callable[[int, int], None]  # (images done, images in total)


@dataclass
class ImageResult:
    """One image's prediction: its true class, its top-5 (class indices of the model) and their probabilities."""

    path: str  # as found (a name that is not valid UTF-8 keeps its bytes, so the file can be opened again)
    true_index: int
    top: list[int]
    top_probs: list[float]
    prob_true: float

    @property
    def predicted(self) -> int:
        return self.top[0]

    @property
    def shown_path(self) -> str:
        """The path as text that can be printed and written (undecodable bytes as \\xNN)."""
        return display_path(self.path)

    @property
    def loss(self) -> float:
        """Cross entropy of this image: -log p(true class)."""
        return -math.log(max(self.prob_true, _EPS))


@dataclass
class EvaluationReport:
    model: str
    data: str
    crop: str  # "centre" or "ten-crop"
    class_names: list[str]  # every class of the model
    results: list[ImageResult]
    skipped: list[Skipped] = field(default_factory=list)
    unknown_classes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    _cache: Any = field(default=None, init=False, repr=False, compare=False)  # see _arrays

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def top1_error(self) -> float | None:
        """None when no image could be evaluated."""
        return 1.0 - float(self._arrays()[2].mean()) if self.n else None

    @property
    def top5_error(self) -> float | None:
        return 1.0 - float(self._arrays()[3].mean()) if self.n else None

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(true class, top-1 class, top-1 hit, top-5 hit) per image, computed once per set of results."""
        cached = self._cache
        if cached is None or cached[0] != len(self.results):
            true = np.fromiter((r.true_index for r in self.results), np.int64, len(self.results))
            pred = np.fromiter((r.predicted for r in self.results), np.int64, len(self.results))
            top5 = np.fromiter((r.true_index in r.top for r in self.results), bool, len(self.results))
            cached = (len(self.results), (true, pred, true == pred, top5))
            self._cache = cached
        return cached[1]

    def classes(self) -> list[int]:
        """The model's classes the confusion matrix and the per-class table show, in the model's order: all
        of them up to FULL_CONFUSION_UP_TO classes; for a bigger model (torchvision's 1000 on a 10-class
        folder) those that are a true class or a top-1 prediction of some image."""
        if len(self.class_names) <= FULL_CONFUSION_UP_TO:
            return list(range(len(self.class_names)))
        true, pred, _, _ = self._arrays()
        return sorted(set(true.tolist()) | set(pred.tolist()))

    def confusion(self) -> np.ndarray:
        """(C, C) counts over classes(): rows the true class, columns the top-1 prediction."""
        shown = np.asarray(self.classes(), np.int64)
        true, pred, _, _ = self._arrays()
        matrix = np.zeros((len(shown), len(shown)), np.int64)
        if len(true):
            np.add.at(matrix, (np.searchsorted(shown, true), np.searchsorted(shown, pred)), 1)
        return matrix

    def per_class(self) -> list[dict[str, Any]]:
        """For each shown class: images, precision and recall of the top-1, top-1 and top-5 error
        (None where a class has no images, or is never predicted for precision). One pass over the images."""
        size = len(self.class_names)
        true, pred, hit, top5 = self._arrays()
        n = np.bincount(true, minlength=size)
        predicted = np.bincount(pred, minlength=size)
        hits = np.bincount(true, weights=hit, minlength=size)
        hits5 = np.bincount(true, weights=top5, minlength=size)
        rows = []
        for c in self.classes():
            count = int(n[c])
            rows.append({
                "class": self.class_names[c],
                "n": count,
                "precision": float(hits[c] / predicted[c]) if predicted[c] else None,
                "recall": float(hits[c] / count) if count else None,
                "top1_error": float(1.0 - hits[c] / count) if count else None,
                "top5_error": float(1.0 - hits5[c] / count) if count else None,
            })  # fmt: skip
        return rows

    def worst(self, k: int = DEFAULT_WORST) -> list[ImageResult]:
        """The k images with the highest loss, highest first (ties in folder order)."""
        ranked = heapq.nsmallest(k, enumerate(self.results), key=lambda item: (-item[1].loss, item[0]))
        return [r for _, r in ranked]

    def in_cell(self, true_index: int, predicted: int) -> list[ImageResult]:
        """The images of one confusion cell (model class indices), in folder order."""
        true, pred, _, _ = self._arrays()
        return [self.results[i] for i in np.flatnonzero((true == true_index) & (pred == predicted))]

    def worst_json(self, k: int) -> list[dict[str, Any]]:
        names = self.class_names
        return [{"path": r.shown_path, "true": names[r.true_index], "predicted": names[r.predicted],
                 "prob_true": round(r.prob_true, 6), "prob_predicted": round(r.top_probs[0], 6),
                 "loss": round(r.loss, 6)} for r in self.worst(k)]  # fmt: skip

    def to_json(self, worst: int = DEFAULT_WORST) -> dict[str, Any]:
        shown = self.classes()
        return {
            "model": self.model,
            "data": self.data,
            "crop": self.crop,
            "n": self.n,
            "top1_error": self.top1_error,
            "top5_error": self.top5_error,
            "classes": [self.class_names[c] for c in shown],
            "confusion": self.confusion().tolist(),
            "per_class": self.per_class(),
            "worst": self.worst_json(worst),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "unknown_classes": list(self.unknown_classes),
        }


def evaluate(
    predictor: Predictor,
    images: EvaluationSet,
    ten_crop: bool = False,
    batch_size: int = 32,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> EvaluationReport:
    """Every image of `images` through `predictor`; files that cannot be read are skipped with the reason.
    Cancelled when `stop` is set (between batches)."""
    start = time.monotonic()
    results: list[ImageResult] = []
    skipped = list(images.skipped)
    total = len(images.items)
    done = 0
    if progress is not None:
        progress(0, total)
    for batch, labels, names, unreadable in _decoded_batches(images.items, batch_size, predictor.decode_size, stop):
        skipped += unreadable
        if batch is not None:
            probs, _ = predictor.predict_u8(batch, ten_crop=ten_crop)
            results += _results(probs, labels, names)
        done += len(names) + len(unreadable)
        if progress is not None:
            progress(done, total)
    return EvaluationReport(predictor.source, images.folder, "ten-crop" if ten_crop else "centre",
                            list(predictor.class_names), results, skipped, list(images.unknown_classes),
                            time.monotonic() - start)


def _results(probs: np.ndarray, labels: list[int], names: list[str]) -> list[ImageResult]:
    k = min(TOP, probs.shape[1])
    # A stable sort of -p: the order classify_image reports (ties by class index).
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        ImageResult(name, label, [int(i) for i in row], [float(p[i]) for i in row], float(p[label]))
        for p, row, label, name in zip(probs, order, labels, names)
    ]


Batch = tuple[np.ndarray | None, list[int], list[str], list[Skipped]]


def _decode(chunk: list[tuple[str, int]], size: int) -> Batch:
    images, labels, names, unreadable = [], [], [], []
    for path, label in chunk:
        try:
            images.append(load_256(path, size))
        except ImageError as e:
            unreadable.append(Skipped(display_path(path), e.reason))
            continue
        labels.append(label)
        names.append(path)
    return (np.stack(images) if images else None), labels, names, unreadable


def _decoded_batches(
    items: list[tuple[str, int]], batch_size: int, size: int, stop: threading.Event | None
) -> Iterator[Batch]:
    """Batches decoded one ahead in the training loop's prefetch thread (Pillow releases the GIL, so
    decoding overlaps the forward pass; the thread is joined however the caller ends); at most two
    batches of pixels are held at any time."""
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    for batch in prefetched((_decode(chunk, size) for chunk in chunks), depth=1):
        if stop is not None and stop.is_set():
            raise Cancelled("evaluation cancelled")
        yield batch

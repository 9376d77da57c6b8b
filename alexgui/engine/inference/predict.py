"""Inference: a Predictor turns decoded 256x256 images into class probabilities and fc7 features.

Every backend (torch here; ONNX Runtime in alexgui.engine.inference.onnx_runtime) takes the same uint8
(B, 256, 256, 3) batches that load_256 produces and runs the same Preprocess the model was trained
with, so a model gives the same answer in the GUI, on the command line and after export.

`sources.load_predictor(spec)` resolves what a user names:
    "torchvision"          torchvision's ImageNet AlexNet from the model zoo (torch hub cache)
    a run folder           its best checkpoint, else its last
    FILE.safetensors       an alexgui checkpoint (config, class names and preprocessing inside)
    FILE.pth / .pt / .bin  a state_dict of torchvision's AlexNet (loaded with weights_only=True)
    FILE.onnx              an exported model (ONNX Runtime backend)
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexgui.config import ConfigError, ModelConfig, RunConfig
from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.data.labels import true_class
from alexgui.engine.data.transforms import Preprocess, mean_over_crops
from alexgui.engine.data.walk import special_file_reason
from alexgui.engine.devices import parse_device
from alexgui.engine.model.base import AlexNetBase
from alexgui.engine.model.networks import build_model
from alexgui.engine.model.torchvision_alexnet import WeightsError, torchvision_model_from_state
from alexgui.engine.store.checkpoint import (
    CheckpointError,
    first_line,
    load_checkpoint,
    split_prefix,
    weights_fingerprint,
)
from alexgui.errors import AlexguiError

# Files a folder drop or a gallery folder contributes; explicitly named files are tried whatever
# their suffix (and get a clear message when they are not images).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)
# The same list for file dialogs (Qt's name-filter syntax).
IMAGE_FILE_FILTER = f"Images ({' '.join('*' + s for s in sorted(IMAGE_SUFFIXES))});;All files (*)"

Progress = Callable[[int, int], None]


class PredictorError(AlexguiError):
    """A model that cannot be loaded or used; the message names the file and the problem."""


def check_model_file(path: Path) -> None:
    """PredictorError unless `path` is a regular file: a named pipe, socket or device given as a model
    would block the reader or stream forever, so it is refused before anything opens it."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise PredictorError(path, f"cannot read ({e.strerror or e})") from None
    reason = special_file_reason(mode)
    if reason is not None:
        raise PredictorError(path, f"{reason} (a model is a checkpoint, an ONNX file or a run folder)")


class Predictor(ABC):
    """What the classify and retrieval views need from a model, whatever runs it."""

    class_names: list[str]
    arch: str
    fingerprint: str  # changes whenever the weights change (stale retrieval indexes)
    source: str  # where the model came from, for display
    wnids: list[str] | None = None  # ImageNet WordNet ids per class, when known

    @abstractmethod
    def predict_u8(self, u8: np.ndarray | torch.Tensor, ten_crop: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (B, 256, 256, 3) -> (softmax probabilities (B, C), fc7 features after ReLU (B, 4096)),
        both float32 numpy. ten_crop averages both over the paper's 10 test crops."""

    @property
    def decode_size(self) -> int:
        """The side a file is decoded at for this model: its preprocessing's resize (256 for the paper,
        the run's --resize for others). Decoding straight at it keeps inference's pixels the training's."""
        pre = getattr(self, "preprocess", None)
        return int(pre.resize) if pre is not None else 256

    def load_image(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The file decoded as this model's input image (ImageError for a file that cannot be used)."""
        return load_256(path, self.decode_size)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "arch": self.arch,
            "fingerprint": self.fingerprint,
            "num_classes": len(self.class_names),
        }


class TorchPredictor(Predictor):
    """A PyTorch AlexNet in eval mode with its preprocessing. Safe to call from one worker thread
    at a time per instance; the model must not be trained while it is in use (give it a copy)."""

    def __init__(
        self,
        model: AlexNetBase,
        preprocess: Preprocess,
        class_names: Sequence[str],
        fingerprint: str,
        source: str,
        device: str | torch.device = "cpu",
        wnids: Sequence[str] | None = None,
    ) -> None:
        if len(class_names) != model.num_classes:
            raise PredictorError(f"{source}: {len(class_names)} class names for a {model.num_classes}-class model")
        self.device = parse_device(device) if isinstance(device, str) else torch.device(device)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess.to(self.device)
        self.class_names = list(class_names)
        self.arch = model.arch
        self.fingerprint = fingerprint
        self.source = source
        self.wnids = list(wnids) if wnids is not None else None
        self.lineage: dict[str, Any] | None = None  # where a fine-tuned checkpoint came from (init_source.lineage)
        self._lock = threading.Lock()

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def from_state(
        cls,
        model_cfg: ModelConfig,
        state_dict: dict[str, torch.Tensor],
        preprocess: Preprocess,
        class_names: Sequence[str],
        source: str,
        device: str | torch.device = "cpu",
    ) -> TorchPredictor:
        """A fresh model with a copy of `state_dict` (e.g. the training run's current weights)."""
        cfg = ModelConfig(**{**model_cfg.__dict__, "num_classes": len(class_names)})
        model = build_model(cfg)
        try:
            model.load_state_dict({k: v.detach().to("cpu") for k, v in state_dict.items()}, strict=True)
        except RuntimeError as e:
            raise PredictorError(f"{source}: the weights do not fit the model ({first_line(e)})") from None
        return cls(model, preprocess, class_names, weights_fingerprint(state_dict), source, device)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TorchPredictor:
        """An alexgui .safetensors checkpoint: model config, classes and preprocessing travel inside."""
        path = Path(path)
        check_model_file(path)
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            raise PredictorError(str(e)) from None
        meta = ckpt.meta
        missing = [k for k in ("config", "class_names", "preprocessing") if k not in meta]
        if missing:
            if "features.0.weight" in ckpt.tensors:
                return cls._from_torchvision_state(path, ckpt.tensors, device)
            raise PredictorError(
                f"{path}: not an alexgui checkpoint (its metadata lacks {', '.join(missing)})"
            )
        try:
            cfg = RunConfig.from_toml(meta["config"], f"{path} (config)")
        except ConfigError as e:
            raise PredictorError(str(e)) from None
        state = split_prefix(ckpt.tensors, "model.")
        try:
            preprocess = Preprocess.from_description(meta["preprocessing"], split_prefix(ckpt.tensors, "stats."))
        except ValueError as e:
            raise PredictorError(f"{path}: {e}") from None
        predictor = cls.from_state(cfg.model, state, preprocess, list(meta["class_names"]), str(path), device)
        lineage = meta.get("lineage")
        predictor.lineage = lineage if isinstance(lineage, dict) else None  # a fine-tuned model's origin
        return predictor

    @classmethod
    def from_run_dir(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TorchPredictor:
        """A run folder's best checkpoint, or its last when it has no best yet."""
        from alexgui.engine.store.rundir import RunDir, RunDirError

        try:
            run = RunDir.open(path)
        except (RunDirError, ConfigError) as e:
            raise PredictorError(str(e)) from None
        for candidate in (run.best_checkpoint, run.last_checkpoint):
            if candidate.exists():
                return cls.from_checkpoint(candidate, device)
        raise PredictorError(f"{path}: the run has no checkpoint yet (looked for {run.best_checkpoint.name} "
                             f"and {run.last_checkpoint.name} in {run.checkpoints_dir})")

    @classmethod
    def from_torchvision_file(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TorchPredictor:
        """A torchvision AlexNet state_dict (.pth), e.g. alexnet-owt-7be5be79.pth."""
        path = Path(path)
        check_model_file(path)
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            raise PredictorError(str(e)) from None
        return cls._from_torchvision_state(path, ckpt.tensors, device)

    @classmethod
    def _from_torchvision_state(
        cls, path: Path, state: dict[str, torch.Tensor], device: str | torch.device
    ) -> TorchPredictor:
        from alexgui.engine.model import zoo

        try:
            model = torchvision_model_from_state(state, source=str(path))
        except WeightsError as e:
            raise PredictorError(str(e)) from None
        entry = zoo.default_entry()
        if model.num_classes == len(entry.categories):
            names, wnids = entry.categories, entry.wnids
        else:
            names, wnids = [f"class {i}" for i in range(model.num_classes)], None
        return cls(
            model,
            Preprocess.imagenet_mean_std(),
            names,
            weights_fingerprint(state),
            str(path),
            device,
            wnids=wnids,
        )

    @property
    def lock(self) -> threading.Lock:
        """Held while the model runs: other users of the same model (explanations) take it too."""
        return self._lock

    # ---- inference ----------------------------------------------------------------------------

    @torch.inference_mode()
    def predict_u8(self, u8: np.ndarray | torch.Tensor, ten_crop: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(u8, np.ndarray) and not u8.flags.writeable:
            u8 = u8.copy()  # torch warns on (and may not share) read-only numpy memory
        batch = torch.as_tensor(u8).to(self.device)
        if batch.ndim == 3:
            batch = batch.unsqueeze(0)
        with self._lock:
            x, crops = self.preprocess.test_batch(batch, ten_crop)
            feats = self.model.forward_features(x)
            probs = torch.softmax(self.model.forward_head(feats).float(), dim=1)
            # The paper averages the softmax over the ten patches; the features likewise.
            probs, feats = mean_over_crops(probs, crops), mean_over_crops(feats, crops)
        return probs.cpu().numpy().astype(np.float32), feats.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        device = str(next(self.model.parameters()).device)
        out = {**super().describe(), "backend": "torch", "provider": device, "preprocessing": self.preprocess.describe()}
        if self.lineage is not None:
            out["lineage"] = self.lineage
        return out


# ---- classifying files ------------------------------------------------------------------------


@dataclass
class TopClass:
    label: str
    index: int
    prob: float


@dataclass
class Classified:
    """One image's result, or the reason it has none."""

    path: str
    top: list[TopClass] = field(default_factory=list)
    ms: float = 0.0  # preprocessing + forward pass for this image, milliseconds
    true_index: int | None = None
    true_prob: float | None = None  # the true class's probability, when the true class is known
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)  # the 256x256 uint8 input, for thumbnails

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        d: dict[str, Any] = {
            "path": self.path,
            "top": [{"label": t.label, "index": t.index, "prob": round(t.prob, 6)} for t in self.top],
            "ms": round(self.ms, 2),
        }
        if self.true_index is not None:
            d["true_index"] = self.true_index
        return d


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files below `folder` (by suffix, case-insensitive), hidden ones skipped, sorted."""
    root = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return found


def expand_inputs(items: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Files as given (whatever their suffix), folders replaced by the image files below them."""
    out: list[str] = []
    for item in items:
        if not os.fspath(item):  # Path("") is ".": an empty name is a file not found, not the current folder
            out.append("")
            continue
        p = Path(item)
        if p.is_dir():
            out.extend(str(f) for f in list_images(p))
        else:
            out.append(str(p))
    return out


def classify_image(
    predictor: Predictor,
    name: str,
    u8: np.ndarray,
    top_k: int = 5,
    ten_crop: bool = False,
) -> Classified:
    """Classify one decoded (256, 256, 3) uint8 image (a file's, or one pasted from the clipboard)."""
    t0 = time.perf_counter()
    probs, _ = predictor.predict_u8(u8[None], ten_crop=ten_crop)
    ms = (time.perf_counter() - t0) * 1000.0
    p = probs[0]
    k = min(top_k, p.shape[0])
    order = np.argsort(-p, kind="stable")[:k]
    top = [TopClass(predictor.class_names[i], int(i), float(p[i])) for i in order]
    truth = true_class(name, predictor.class_names, predictor.wnids)
    true_prob = float(p[truth]) if truth is not None else None
    return Classified(name, top, ms, truth, true_prob, image=u8)


def classify_files(
    predictor: Predictor,
    paths: Sequence[str | os.PathLike[str]],
    top_k: int = 5,
    ten_crop: bool = False,
    stop: threading.Event | None = None,
) -> Iterator[Classified]:
    """One Classified per path, in order; a file that cannot be read yields one with `error` set and
    the rest carry on. Stops early (without a result for the rest) when `stop` is set."""
    for path in paths:
        if stop is not None and stop.is_set():
            return
        if not os.fspath(path):
            yield Classified("", error="an empty file name")  # Path("") would be the current folder
            continue
        try:
            u8 = predictor.load_image(path)
        except ImageError as e:
            yield Classified(str(path), error=e.reason)
            continue
        try:
            yield classify_image(predictor, str(path), u8, top_k, ten_crop)
        except (RuntimeError, ValueError) as e:  # a model that cannot take this input
            yield Classified(str(path), error=f"inference failed ({first_line(e)})")

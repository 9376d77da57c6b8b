"""The "head" fine-tune's fast path: each image's fc7 features computed once, the last layer trained on them.

With finetune "head" every layer below fc8 is frozen, so what those layers compute for an image never
changes: a step through all of them for every batch of every epoch repeats the same work. Instead, before
the first step, each training image's 4096 fc7 features are computed for VIEWS fixed views (the centre
crop, and VIEWS - 1 random crops, each reflected at random, as training draws them, without the colour
noise), and each validation image's for the centre crop (or the paper's ten crops when the run validates
on ten). Each epoch then gives every training image one of its views, drawn from (seed, epoch), and a
step is fc8's forward and backward alone: thousands of images a second on a CPU.

What differs from the full network's step: the dropout on fc6's output (inside the frozen layers) is not
drawn afresh each step (the features are computed in eval mode), and an image's crops are VIEWS fixed ones
rather than new ones each epoch. The dropout before fc8 (the paper network's) is applied as usual.

The features are cached (float16, a memory map) in the user's cache folder under a key made of the
source's weights fingerprint, the preprocessing, the crop, the views' seed and every image's path and
file stamp, so a second run on the same photos from the same source starts at once. Written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from alexgui.engine.data.imageset import ImageSet
from alexgui.engine.data.transforms import Preprocess, mean_over_crops
from alexgui.engine.model.base import AlexNetBase
from alexgui.engine.store.atomic import fsync_dir
from alexgui.engine.training.evaluation import hit_rates
from alexgui.errors import Cancelled

VIEWS = 4  # per training image: the centre crop and three random ones
BATCH = 32  # images per forward pass while the features are computed
FEATURES_DIR = "fc7-features"

Progress = Callable[[str, int, int], None]


@dataclass
class HeadFeatures:
    """The training images' views (N, VIEWS, 4096) and the validation images' crops (M, C, 4096), float16."""

    train: np.ndarray
    train_labels: np.ndarray
    val: np.ndarray
    val_labels: np.ndarray
    from_cache: bool = False

    def batches(self, order: np.ndarray, batch_size: int, seed: int, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(float32 (B, 4096), int64 (B,)) over the training images in `order`, each image's view for this
        epoch drawn from (seed, epoch)."""
        views = np.random.default_rng([seed, epoch, VIEWS]).integers(0, self.train.shape[1], len(self.train))
        for start in range(0, len(order), batch_size):
            chosen = np.asarray(order[start : start + batch_size], dtype=np.int64)
            feats = np.asarray(self.train[chosen, views[chosen]], dtype=np.float32)
            yield torch.from_numpy(feats), torch.from_numpy(self.train_labels[chosen].copy())

    @torch.no_grad()
    def validate(self, model: AlexNetBase, device: torch.device) -> tuple[float, float, float]:
        """Mean loss, top-1 and top-5 error of the model's last layer on the validation features (the softmax
        averaged over the crops, as evaluation.evaluate does)."""
        if not len(self.val):
            return math.nan, math.nan, math.nan
        was_training = model.training
        model.eval()
        loss_sum, top1, top5 = 0.0, 0.0, 0.0
        try:
            for start in range(0, len(self.val), 256):
                feats = torch.from_numpy(np.asarray(self.val[start : start + 256], dtype=np.float32)).to(device)
                labels = torch.from_numpy(self.val_labels[start : start + 256].copy()).to(device)
                b, crops, dim = feats.shape
                crop_major = feats.transpose(0, 1).reshape(crops * b, dim)  # as test_batch stacks them
                probs = mean_over_crops(model.forward_head(crop_major).float().softmax(dim=1), crops)
                loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum"))
                t1, t5 = hit_rates(probs, labels).tolist()
                top1 += t1 * b
                top5 += t5 * b
        finally:
            model.train(was_training)
        n = len(self.val)
        return loss_sum / n, 1.0 - top1 / n, 1.0 - top5 / n


def head_step(model: AlexNetBase, optimizer: torch.optim.Optimizer, feats: torch.Tensor,
              labels: torch.Tensor) -> tuple[float, float, float]:
    """One training step of the last layer on a batch of cached fc7 features: (loss, top-1, top-5 hit rate).
    The paper network applies its dropout between fc7 and fc8 (PaperAlexNet.forward), so it is applied
    here too (the step's seed was set by the loop); torchvision's has none there."""
    drop = getattr(model, "drop", None)
    x = drop(feats) if isinstance(drop, torch.nn.Dropout) else feats
    logits = model.forward_head(x)
    loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        values = torch.cat([loss.detach().reshape(1), hit_rates(logits.detach().float(), labels)])
    loss_value, top1, top5 = values.tolist()
    return loss_value, top1, top5


def cache_key(fingerprint: str, preprocess: Preprocess, train: ImageSet, val: ImageSet, seed: int, ten_crop: bool) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"fingerprint": fingerprint, "preprocessing": preprocess.describe(), "views": VIEWS,
                         "seed": seed, "ten_crop": ten_crop, "format": 1}, sort_keys=True, default=str).encode())
    for images in (train, val):
        h.update(json.dumps([images.paths, [repr(s) for s in images.stamps], images.labels.tolist()]).encode())
    return h.hexdigest()[:32]


def head_features(
    model: AlexNetBase,
    preprocess: Preprocess,
    train: ImageSet,
    val: ImageSet,
    fingerprint: str,
    seed: int,
    ten_crop: bool,
    device: torch.device,
    cache_root: Path,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> HeadFeatures:
    """The features, from the cache when they were computed before, else computed (with progress) and cached."""
    report = progress or (lambda stage, done, total: None)
    folder = Path(cache_root) / FEATURES_DIR
    key = cache_key(fingerprint, preprocess, train, val, seed, ten_crop)
    paths = {part: folder / f"{key}.{part}.npy" for part in ("train", "val")}
    if all(p.exists() for p in paths.values()):
        try:
            cached = {part: np.load(p, mmap_mode="r", allow_pickle=False) for part, p in paths.items()}
            if cached["train"].shape[0] == len(train) and cached["val"].shape[0] == len(val):
                report("fc7 features (cached)", 1, 1)
                return HeadFeatures(cached["train"], train.labels, cached["val"], val.labels, from_cache=True)
        except (OSError, ValueError):
            pass  # a damaged cache file: computed again below and replaced
    folder.mkdir(parents=True, exist_ok=True)
    total = len(train) * VIEWS + len(val) * (10 if ten_crop else 1)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        report("fc7 features", done[0], total)

    out = {}
    out["train"] = _compute(model, preprocess, train, "train", seed, ten_crop, device, paths["train"], tick, stop)
    out["val"] = _compute(model, preprocess, val, "val", seed, ten_crop, device, paths["val"], tick, stop)
    return HeadFeatures(out["train"], train.labels, out["val"], val.labels)


@torch.inference_mode()
def _compute(model: AlexNetBase, preprocess: Preprocess, images: ImageSet, part: str, seed: int, ten_crop: bool,
             device: torch.device, path: Path, tick: Callable[[int], None], stop: threading.Event | None) -> np.ndarray:
    views = VIEWS if part == "train" else 10 if ten_crop else 1
    dim = _feature_dim(model)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(images), views, dim))
    was_training = model.training
    model.eval()
    try:
        for start, (u8, _) in zip(range(0, len(images), BATCH), images.batches(np.arange(len(images)), BATCH)):
            if stop is not None and stop.is_set():
                raise Cancelled("stopped while computing the fc7 features")
            u8 = u8.to(device)
            b = u8.shape[0]
            if part == "train":
                generator = torch.Generator().manual_seed(seed * 1_000_003 + start)  # the same views every time
                batches = [preprocess.center_batch(u8)] + [
                    preprocess.train_batch(u8, generator, random_crop=True, flip=True, pca_noise=0.0) for _ in range(VIEWS - 1)]
                x = torch.cat(batches)  # view-major: (VIEWS * b, ...)
            else:
                x, _ = preprocess.test_batch(u8, ten_crop)  # crop-major: (crops * b, ...)
            feats = model.forward_features(x).float().cpu().numpy().reshape(views, b, dim).transpose(1, 0, 2)
            array[start : start + b] = feats.astype(np.float16)
            tick(b * views)
        array.flush()
        del array
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        model.train(was_training)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _feature_dim(model: AlexNetBase) -> int:
    fc8 = model.layer_modules("fc8")[0]
    assert isinstance(fc8, torch.nn.Linear)
    return fc8.in_features

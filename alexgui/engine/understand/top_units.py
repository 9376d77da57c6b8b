"""The images that drive each unit: for every unit of a layer, the K gallery images it responds to most.

One streaming pass over the gallery (decoded at the model's size, its centre crop, as classify sees
them) keeps a running top-K per unit: each batch's values are merged with the K kept so far by one
torch.topk over (units, K + batch), so memory is (units x K) whatever the gallery's size. A conv
unit's value for an image is its channel's maximum over the map, and the position of that maximum is
kept too: its receptive field (receptive_field.py) is the patch of the 224 crop that made it fire, as
a box. fc6, fc7 and fc8 units are ranked by their value (fc8: the class score before the softmax).

A pass computes every unit of the layer at once and is cached on disk (cache_dir()/top-units, a
.npz read with allow_pickle=False), keyed by the model's fingerprint, the layer, the preprocessing and
every image's path, size and modification time, so asking for another unit of the same layer is
instant and a changed gallery or model is computed again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alexgui.engine.data.imageio import ImageError
from alexgui.engine.inference.predict import TorchPredictor, list_images
from alexgui.engine.store.atomic import atomic_write_bytes
from alexgui.engine.store.npz import NpzError, read_npz
from alexgui.engine.understand.receptive_field import CONV_UNITS, geometry
from alexgui.errors import AlexguiError, Cancelled

UNIT_LAYERS = (*CONV_UNITS, "fc6", "fc7", "fc8")
DEFAULT_K = 9
CACHE_FOLDER = "top-units"
FORMAT = "alexgui-top-units/1"
CACHE_FILES = 64  # passes kept in the cache, the most recently used
CACHE_BYTES = 512 * 1024 * 1024

Progress = Callable[[int, int], None]


class TopUnitsError(AlexguiError):
    """A gallery, layer or unit that cannot be used; the message names it and the problem."""


@dataclass(frozen=True)
class TopImage:
    path: str
    activation: float
    box: tuple[int, int, int, int] | None  # [x0, y0, x1, y1) in the centre crop's pixels; None for fc units

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "activation": round(self.activation, 6),
                "box": list(self.box) if self.box is not None else None}


@dataclass
class LayerTops:
    """Every unit's top K of one layer over one gallery."""

    layer: str
    paths: list[str]  # the gallery images that were read, in pass order
    values: np.ndarray  # (units, K) float32, highest first; -inf where the gallery has fewer than K images
    images: np.ndarray  # (units, K) int32 rows of `paths`, -1 where none
    boxes: np.ndarray | None  # (units, K, 4) int16 for conv layers, None for fc
    crop: int
    skipped: list[str]  # "PATH: reason" for files that could not be read

    @property
    def units(self) -> int:
        return int(self.values.shape[0])

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    def unit(self, unit: int, k: int | None = None) -> list[TopImage]:
        """The unit's top images, highest first (fewer than K for a small gallery)."""
        if not 0 <= unit < self.units:
            raise TopUnitsError(f"{self.layer} has units 0..{self.units - 1}; there is no unit {unit}")
        out = []
        for j in range(min(self.k, k or self.k)):
            i = int(self.images[unit, j])
            if i < 0:
                break
            box = tuple(int(v) for v in self.boxes[unit, j]) if self.boxes is not None else None
            out.append(TopImage(self.paths[i], float(self.values[unit, j]), box))  # type: ignore[arg-type]
        return out


def gallery_paths(images: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    """A folder's image files (sorted), or the given list of paths (an index's)."""
    if isinstance(images, (str, os.PathLike)):
        root = Path(images)
        if not root.is_dir():
            raise TopUnitsError(f"{root}: not a folder of images")
        found = [str(p) for p in list_images(root)]
        if not found:
            raise TopUnitsError(f"{root}: no image files found")
        return found
    return [str(p) for p in images]


def top_images(
    predictor: TorchPredictor,
    images: str | os.PathLike[str] | Sequence[str],
    layer: str,
    k: int = DEFAULT_K,
    batch_size: int = 32,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    cache: Path | None = None,
) -> LayerTops:
    """Every unit of `layer`'s top `k` images of the gallery (see the module docstring). `cache`: the
    folder cached passes live in (None: no cache). Cancelled when `stop` is set."""
    if layer not in UNIT_LAYERS:
        raise TopUnitsError(f"no units to rank in {layer!r}; choose one of {', '.join(UNIT_LAYERS)}")
    if k < 1:
        raise TopUnitsError(f"k must be at least 1, got {k}")
    paths = gallery_paths(images)
    key = _cache_key(predictor, layer, paths)
    cached = _read_cache(cache, key, layer, k) if cache is not None else None
    if cached is not None:
        if progress is not None:
            progress(len(paths), len(paths))
        return cached
    tops = _stream(predictor, paths, layer, k, batch_size, progress, stop)
    if cache is not None:
        _write_cache(cache, key, tops)
    return tops


def _stream(predictor: TorchPredictor, paths: list[str], layer: str, k: int, batch_size: int,
            progress: Progress | None, stop: threading.Event | None) -> LayerTops:
    model, pre = predictor.model, predictor.preprocess
    device = next(model.parameters()).device
    conv = layer in CONV_UNITS
    values = images = positions = None
    width = 1
    read: list[str] = []
    skipped: list[str] = []
    total = len(paths)
    for start in range(0, total, batch_size):
        if stop is not None and stop.is_set():
            raise Cancelled(f"top images of {layer} cancelled after {start} of {total} images")
        batch = []
        for path in paths[start : start + batch_size]:
            try:
                batch.append(predictor.load_image(path))
                read.append(path)
            except ImageError as e:
                skipped.append(f"{e.path}: {e.reason}")
        if batch:
            with predictor.lock, torch.inference_mode():
                x = pre.center_batch(torch.from_numpy(np.stack(batch)).to(pre.mean.device)).to(device)
                act = model.activations(x, [layer])[layer].float()
            if conv:
                width = act.shape[3]
                score, where = act.flatten(2).max(2)  # (B, C) each: the channel's peak and its place
            else:
                score, where = act, torch.zeros_like(act, dtype=torch.long)
            ids = torch.arange(len(read) - len(batch), len(read), device=score.device)
            values, images, positions = _merge(values, images, positions, score.T, ids, where.T, k)
        if progress is not None:
            progress(min(start + batch_size, total), total)
    if values is None or images is None or positions is None:
        raise TopUnitsError(f"none of the {total} images could be read" + (f" ({skipped[0]})" if skipped else ""))
    boxes = None
    if conv:
        geo = geometry(model, layer)
        pos = positions.cpu().numpy()
        boxes = np.array([[geo.box(int(p) // width, int(p) % width, pre.crop) for p in row] for row in pos], np.int16)
    return LayerTops(layer, read, values.cpu().numpy().astype(np.float32), images.cpu().numpy().astype(np.int32),
                     boxes, pre.crop, skipped)


def _merge(values: torch.Tensor | None, images: torch.Tensor | None, positions: torch.Tensor | None,
           score: torch.Tensor, ids: torch.Tensor, where: torch.Tensor, k: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kept (units, K) top values, image ids and positions merged with a batch's (units, B)."""
    units, b = score.shape
    batch_ids = ids.reshape(1, b).expand(units, b)
    if values is None or images is None or positions is None:
        values = torch.full((units, 0), float("-inf"), device=score.device)
        images = torch.full((units, 0), -1, dtype=torch.long, device=score.device)
        positions = torch.zeros((units, 0), dtype=torch.long, device=score.device)
    all_v = torch.cat([values, score], 1)
    all_i = torch.cat([images, batch_ids], 1)
    all_p = torch.cat([positions, where], 1)
    # Ties go to the earlier image: sort by (value desc, image id asc) with a stable sort on the ids first.
    order = torch.argsort(all_i, dim=1, stable=True)
    all_v, all_i, all_p = all_v.gather(1, order), all_i.gather(1, order), all_p.gather(1, order)
    top = torch.argsort(-all_v, dim=1, stable=True)[:, :k]
    v, i, p = all_v.gather(1, top), all_i.gather(1, top), all_p.gather(1, top)
    if v.shape[1] < k:  # fewer images so far than k: pad with "none"
        pad = k - v.shape[1]
        v = torch.cat([v, torch.full((units, pad), float("-inf"), device=v.device)], 1)
        i = torch.cat([i, torch.full((units, pad), -1, dtype=torch.long, device=i.device)], 1)
        p = torch.cat([p, torch.zeros((units, pad), dtype=torch.long, device=p.device)], 1)
    return v, i, p


# ---- the cache ------------------------------------------------------------------------------------


def _cache_key(predictor: TorchPredictor, layer: str, paths: list[str]) -> str:
    h = hashlib.sha256()
    # The weights' fingerprint, and the network's make-up (LRN, pooling, activation carry no weights of
    # their own: two models could share weights and differ there).
    h.update(json.dumps([FORMAT, predictor.fingerprint, repr(predictor.model), layer, predictor.preprocess.describe()],
                        sort_keys=True, default=str).encode())
    for path in paths:
        try:
            st = os.stat(path)
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = [-1, -1]
        h.update(json.dumps([os.path.abspath(path), stamp]).encode())
    return h.hexdigest()[:32]


def _cache_file(folder: Path, key: str, layer: str) -> Path:
    return folder / CACHE_FOLDER / f"{layer}-{key}.npz"


def _write_cache(folder: Path, key: str, tops: LayerTops) -> None:
    buffer = io.BytesIO()
    arrays: dict[str, np.ndarray] = {"values": tops.values, "images": tops.images,
                                     "meta": np.frombuffer(json.dumps({"format": FORMAT, "layer": tops.layer,
                                                                       "paths": tops.paths, "crop": tops.crop,
                                                                       "skipped": tops.skipped}).encode(), np.uint8)}
    if tops.boxes is not None:
        arrays["boxes"] = tops.boxes
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    try:
        atomic_write_bytes(_cache_file(folder, key, tops.layer), buffer.getvalue())
    except OSError:
        return  # a cache that cannot be written costs the next call a pass, nothing else
    prune(folder / CACHE_FOLDER)


def prune(folder: Path, keep_files: int = CACHE_FILES, keep_bytes: int = CACHE_BYTES) -> list[Path]:
    """Delete the least recently used passes beyond `keep_files` or `keep_bytes` in all (every model
    and checkpoint reloaded makes new ones); a pass read from the cache counts as used."""
    entries = []
    for path in folder.glob("*.npz"):
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((st.st_mtime_ns, st.st_size, path))
    entries.sort(reverse=True)  # newest first
    removed, total = [], 0
    for n, (_, size, path) in enumerate(entries):
        total += size
        if n >= keep_files or total > keep_bytes:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _read_cache(folder: Path, key: str, layer: str, k: int) -> LayerTops | None:
    """The cached pass when it exists, is whole and keeps at least k per unit; None otherwise."""
    path = _cache_file(folder, key, layer)
    if not path.is_file():
        return None
    try:
        data = read_npz(path, ("meta", "values", "images"), optional=("boxes",))
        meta = json.loads(bytes(data["meta"]).decode())
    except (OSError, NpzError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # damaged: computed again, and the file replaced
    values, images, boxes = data["values"], data["images"], data.get("boxes")
    if values.ndim != 2 or images.shape != values.shape or (boxes is not None and boxes.shape[:2] != values.shape):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or values.shape[1] < k:
        return None
    keep = slice(0, k)
    try:
        paths = [str(p) for p in meta["paths"]]
        tops = LayerTops(str(meta["layer"]), paths, values[:, keep], images[:, keep],
                         boxes[:, keep] if boxes is not None else None, int(meta["crop"]), list(meta.get("skipped", [])))
    except (KeyError, TypeError, ValueError):
        return None
    if tops.images.size and int(tops.images.max()) >= len(paths):
        return None
    try:
        os.utime(path)  # used now: the last to be pruned
    except OSError:
        pass  # a read-only cache still serves
    return tops

"""Gallery indexes on disk: saving (atomically, never over another tool's files), loading, staleness,
and which model an index names. The layout is described in retrieval.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from alexgui.engine.inference.gallery import INDEX_FORMAT, INDEX_JSON, GalleryIndex, RetrievalError, file_stamp
from alexgui.engine.inference.predict import list_images
from alexgui.engine.store.atomic import (
    atomic_open,
    atomic_write_text,
    is_temporary,
    process_alive,
    remove_stale_temporaries,
)

_FEATURES_NAME = re.compile(r"^features-(?:(?P<pid>\d+)-)?[0-9a-f]+\.npy$")


def save_index(index: GalleryIndex, folder: str | os.PathLike[str]) -> Path:
    """Write the index into `folder` atomically (see the module docstring); returns the folder."""
    folder = Path(folder)
    check_index_folder(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RetrievalError(f"{folder}: cannot create the index folder ({e.strerror or e})") from None
    previous = _previous_index(folder)
    _sweep(folder, previous)
    name = f"features-{os.getpid()}-{secrets.token_hex(6)}.npy"
    model = dict(index.model)
    source = model.get("source")
    if isinstance(source, str) and Path(source).is_absolute():
        try:
            model["source_from_index"] = os.path.relpath(source, folder.resolve())
        except ValueError:  # another drive (Windows): no relative path exists
            pass
    data = index.features.astype(np.float16 if index.storage_dtype == "float16" else np.float32)
    try:
        with atomic_open(folder / name, "wb") as f:
            np.save(f, data, allow_pickle=False)
        meta = {
            "format": INDEX_FORMAT,
            "created": time.time(),
            "root": index.root,
            "fingerprint": index.fingerprint,
            "model": model,
            "features": name,
            "dtype": index.storage_dtype,
            "dim": int(index.features.shape[1]),
            "paths": index.paths,
            "stamps": index.stamps,
            "skipped": index.skipped,
        }
        atomic_write_text(folder / INDEX_JSON, json.dumps(meta, indent=1))
    except OSError as e:
        raise RetrievalError(f"{folder}: cannot write the index ({e.strerror or e})") from None
    if previous is not None:
        old = previous.get("features")
        if isinstance(old, str) and old != name and _is_plain_name(old):
            (folder / old).unlink(missing_ok=True)
    index.location = folder
    index.model = model
    return folder


def check_index_folder(folder: str | os.PathLike[str]) -> None:
    """Raise RetrievalError unless `folder` can take an index: new, empty, an alexgui index, or what a
    killed save of one left. For callers that check before the work of building one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RetrievalError(f"{folder}: exists and is not a folder; an index is a folder")
    if folder.is_dir():
        _previous_index(folder)


def _previous_index(folder: Path) -> dict[str, Any] | None:
    """The alexgui index already in `folder`, if any; refuses a folder that holds anything else."""
    meta_path = folder / INDEX_JSON
    if meta_path.exists():
        try:
            meta = _read_json(meta_path)
        except RetrievalError as e:
            raise RetrievalError(f"{e}; it is not an alexgui index, so it is left as it is: choose another folder") from None
        if meta.get("format") != INDEX_FORMAT:
            raise RetrievalError(
                f"{meta_path}: not written by alexgui (format {meta.get('format')!r}); it is left as it is: "
                "choose another folder for the index"
            )
        return meta
    others = sorted(p.name for p in folder.iterdir() if not is_temporary(p) and not _FEATURES_NAME.match(p.name))
    if others:
        raise RetrievalError(
            f"{folder}: holds other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}) and no "
            f"alexgui {INDEX_JSON}; choose a new or empty folder for the index"
        )
    return None


def _sweep(folder: Path, previous: dict[str, Any] | None) -> None:
    """Remove what killed saves left here: temporaries, and feature files that no index.json names
    and whose writer is no longer running."""
    remove_stale_temporaries(folder)
    current = previous.get("features") if previous else None
    for path in folder.glob("features-*.npy"):
        m = _FEATURES_NAME.match(path.name)
        if m is None or path.name == current or m["pid"] is None or process_alive(int(m["pid"])):
            continue  # a name from before process ids were recorded: whose it is cannot be told
        path.unlink(missing_ok=True)


def model_source(index: GalleryIndex) -> str | None:
    """What to load as the index's model: its absolute path, else the path relative to the index
    folder (both moved together), else whatever was recorded (an alias such as "torchvision", or a
    relative path from an older index, which then names the missing file)."""
    source = index.model.get("source")
    relative = index.model.get("source_from_index")
    candidates = [source] if isinstance(source, str) else []
    if isinstance(relative, str) and index.location is not None:
        candidates.append(str(Path(index.location) / relative))
    for candidate in candidates:
        if Path(candidate).expanduser().exists():
            return candidate
    return source if isinstance(source, str) and source else None


def load_index(folder: str | os.PathLike[str]) -> GalleryIndex:
    """Read an index folder written by save_index. Raises RetrievalError naming the problem."""
    folder = Path(folder)
    meta_path = folder / INDEX_JSON if folder.is_dir() else folder
    if not meta_path.exists():
        raise RetrievalError(f"{folder}: not an index (no {INDEX_JSON}); build one with `alexgui index`")
    meta = _read_json(meta_path)
    if meta.get("format") != INDEX_FORMAT:
        raise RetrievalError(f"{meta_path}: not an alexgui index (format {meta.get('format')!r})")
    name = meta.get("features")
    if not isinstance(name, str) or not _is_plain_name(name):
        raise RetrievalError(f"{meta_path}: bad feature file name {name!r}")
    npy = meta_path.parent / name
    try:
        raw = np.load(npy, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise RetrievalError(f"{npy}: cannot read the features ({e})") from None
    if raw.dtype not in (np.float16, np.float32) or raw.ndim != 2:
        raise RetrievalError(f"{npy}: expected a 2-d float16/float32 array, found {raw.dtype} {raw.shape}")
    # float16 is widened once here; float32 stays memory-mapped (the OS page cache keeps it warm).
    features = _widen(raw) if raw.dtype == np.float16 else raw
    paths = meta.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise RetrievalError(f"{meta_path}: 'paths' must be a list of strings")
    try:
        index = GalleryIndex(
            paths=paths,
            features=features,
            fingerprint=str(meta.get("fingerprint", "")),
            model=dict(meta.get("model") or {}),
            root=str(meta.get("root", "")),
            stamps={str(k): list(v) for k, v in dict(meta.get("stamps") or {}).items()},
            skipped=list(meta.get("skipped") or []),
            storage_dtype=str(meta.get("dtype", raw.dtype.name)),
            location=meta_path.parent,
        )
    except RetrievalError as e:
        raise RetrievalError(f"{meta_path}: {e}") from None
    return index


def _widen(half: np.ndarray, rows: int = 16384) -> np.ndarray:
    """float16 -> float32 in row blocks with torch (numpy's conversion is ~5x slower on 100k x 4096)."""
    import torch

    out = np.empty(half.shape, np.float32)
    target = torch.from_numpy(out)
    for start in range(0, half.shape[0], rows):
        block = np.array(half[start : start + rows])  # a writable copy of the mapped rows
        target[start : start + len(block)] = torch.from_numpy(block).float()
    return out


def stale_reasons(index: GalleryIndex, fingerprint: str | None = None, max_listed: int = 3) -> list[str]:
    """Why the index no longer matches the model or the folder; an empty list means it is current."""
    reasons: list[str] = []
    if fingerprint is not None and fingerprint != index.fingerprint:
        reasons.append(
            f"built with a different model (fingerprint {index.fingerprint[:12] or '?'}, current {fingerprint[:12]})"
        )
    root = Path(index.root)
    if not root.is_dir():
        reasons.append(f"the gallery folder {root} no longer exists")
        return reasons
    now = {str(p): p for p in list_images(root)}
    added = sorted(set(now) - set(index.stamps))
    removed = sorted(set(index.stamps) - set(now))
    changed = sorted(p for p in set(now) & set(index.stamps) if file_stamp(now[p]) != list(index.stamps[p]))
    for what, items in (("new", added), ("removed", removed), ("changed", changed)):
        if items:
            shown = ", ".join(Path(p).name for p in items[:max_listed])
            more = f" and {len(items) - max_listed} more" if len(items) > max_listed else ""
            reasons.append(f"{len(items)} {what} image file(s) in {root}: {shown}{more}")
    return reasons


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise RetrievalError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise RetrievalError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise RetrievalError(f"{path}: expected a JSON object")
    return data


def _is_plain_name(name: str) -> bool:
    # The feature file must sit next to index.json: no folders, no way out of the index.
    return name == Path(name).name and name not in ("", ".", "..") and name.endswith(".npy")

"""conv1's kernels over a run's training, kept in the run folder: Figure 3 forming, frame by frame.

The trainer writes one small file per kernel snapshot (every TrainControl.snapshot_seconds, and at the
run's start) into RUN/filters/: `step-0000001234.npz` with the (96, 3, 11, 11) kernels in float16
(70 kB; float16 keeps 3 significant digits, far finer than a tile's 256 grey levels), each kernel's
tower, and the epoch. Files are written atomically (a reader in another process sees whole files or
none) and loaded with allow_pickle=False, so a file cannot carry code.

The number of files is bounded: past MAX_SNAPSHOTS, every second snapshot of the older half is deleted
(never the first), so a long run keeps its whole history at a coarser and coarser grain in the past and
a fine one near the present; the total stays under MAX_SNAPSHOTS * 70 kB (about 8 MB).

Runs made before this existed, or a run whose folder lost the files, still have their checkpoints:
`snapshots` lists those (last, best) as frames too, so every run has at least its end to show.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexgui.engine.store.atomic import atomic_write_bytes, is_temporary
from alexgui.engine.store.npz import NpzError, read_npz
from alexgui.errors import AlexguiError

FOLDER = "filters"
MAX_SNAPSHOTS = 120
_NAME = re.compile(r"^step-(\d{10})\.npz$")
_CHECKPOINTS = ("last.safetensors", "best.safetensors")


class FilterHistoryError(AlexguiError):
    """A snapshot that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class SnapshotRef:
    """Where one frame of the history lives: a snapshot file, or a checkpoint (runs before snapshots)."""

    step: int
    path: Path
    from_checkpoint: bool = False


@dataclass
class FilterSnapshot:
    step: int
    epoch: int
    kernels: np.ndarray  # (N, 3, k, k) float32
    towers: list[int]  # the tower of each kernel


def history_folder(run: str | os.PathLike[str]) -> Path:
    return Path(run) / FOLDER


def snapshot_path(run: str | os.PathLike[str], step: int) -> Path:
    return history_folder(run) / f"step-{int(step):010d}.npz"


def write_snapshot(run: str | os.PathLike[str], step: int, epoch: int, kernels: np.ndarray, towers: Sequence[int],
                   keep: int = MAX_SNAPSHOTS) -> Path:
    """Save conv1 at `step` (atomically), then thin the folder to at most `keep` files."""
    weights = np.asarray(kernels, dtype=np.float32)
    if weights.ndim != 4 or weights.shape[1] != 3 or len(towers) != weights.shape[0]:
        raise ValueError(f"expected (N, 3, k, k) kernels with N towers, got {weights.shape} and {len(towers)} towers")
    buffer = io.BytesIO()
    np.savez(buffer, kernels=weights.astype(np.float16), towers=np.asarray(towers, np.int16),
             step=np.int64(step), epoch=np.int64(epoch))
    path = snapshot_path(run, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    thin(history_folder(run), keep)
    return path


def snapshot_files(folder: Path) -> list[SnapshotRef]:
    """The snapshot files in `folder`, by step (a file another process is writing is not listed)."""
    refs = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _NAME.match(entry.name)
        if match and not is_temporary(entry.path):
            refs.append(SnapshotRef(int(match.group(1)), Path(entry.path)))
    return sorted(refs, key=lambda r: r.step)


def thin(folder: Path, keep: int = MAX_SNAPSHOTS) -> list[Path]:
    """Delete every second snapshot of the older half while more than `keep` remain; the first stays."""
    if keep < 3:
        raise ValueError(f"keep at least 3 snapshots (the first, one old, the latest), not {keep}")
    refs = snapshot_files(folder)
    removed: list[Path] = []
    while len(refs) > keep:
        older = refs[: len(refs) // 2]
        doomed = older[1::2]  # odd positions: the first (the run's start) is never among them
        for ref in doomed:
            try:
                ref.path.unlink()
                removed.append(ref.path)
            except FileNotFoundError:
                pass  # thinned by another writer already
        kept = set(r.path for r in doomed)
        refs = [r for r in refs if r.path not in kept]
    return removed


def forget_after(run: str | os.PathLike[str], step: int) -> None:
    """A run resumed from its checkpoint at `step` discards the snapshots of the steps it will redo."""
    for ref in snapshot_files(history_folder(run)):
        if ref.step > step:
            ref.path.unlink(missing_ok=True)


def snapshots(run: str | os.PathLike[str]) -> list[SnapshotRef]:
    """Every frame of the run's history by step: its snapshot files, and its checkpoints at steps that
    no snapshot covers (all a run made before snapshots existed has)."""
    refs = snapshot_files(history_folder(run))
    steps = {r.step for r in refs}
    for name in _CHECKPOINTS:
        path = Path(run) / "checkpoints" / name
        step = _checkpoint_step(path)
        if step is not None and step not in steps:
            refs.append(SnapshotRef(step, path, from_checkpoint=True))
            steps.add(step)
    return sorted(refs, key=lambda r: r.step)


def read_snapshot(ref: SnapshotRef) -> FilterSnapshot:
    """The frame's kernels; FilterHistoryError naming the file when it is missing or damaged."""
    if ref.from_checkpoint:
        return _read_checkpoint(ref)
    try:
        data = read_npz(ref.path, ("kernels", "towers", "step", "epoch"))
    except FileNotFoundError:
        raise FilterHistoryError(f"{ref.path}: no such file (thinned or deleted since it was listed)") from None
    except NpzError as e:
        raise FilterHistoryError(f"{ref.path}: not a filter snapshot ({e})") from None
    try:
        kernels = np.asarray(data["kernels"], np.float32)
        towers = [int(t) for t in np.asarray(data["towers"]).reshape(-1)]
        step, epoch = int(data["step"]), int(data["epoch"])
    except (TypeError, ValueError) as e:
        raise FilterHistoryError(f"{ref.path}: not a filter snapshot ({e})") from None
    if kernels.ndim != 4 or kernels.shape[1] != 3 or len(towers) != kernels.shape[0]:
        raise FilterHistoryError(f"{ref.path}: kernels of shape {kernels.shape} with {len(towers)} towers")
    return FilterSnapshot(step, epoch, kernels, towers)


def _checkpoint_step(path: Path) -> int | None:
    from alexgui.engine.store.checkpoint import CheckpointError, read_meta

    if not path.is_file():
        return None
    try:
        step = read_meta(path).get("step")
    except (CheckpointError, OSError):
        return None
    return int(step) if isinstance(step, int) and not isinstance(step, bool) else None


def _read_checkpoint(ref: SnapshotRef) -> FilterSnapshot:
    from alexgui.engine.store.checkpoint import CheckpointError, read_meta, read_tensors

    try:
        meta = read_meta(ref.path)
        tensors = read_tensors(ref.path, _conv1_keys)
    except (CheckpointError, OSError) as e:
        raise FilterHistoryError(f"{ref.path}: {e}") from None
    parts = [np.asarray(tensors[k].float().numpy()) for k in sorted(tensors)]
    if not parts:
        raise FilterHistoryError(f"{ref.path}: no conv1 weights in this checkpoint")
    kernels = np.concatenate(parts)
    towers = [i for i, part in enumerate(parts) for _ in range(part.shape[0])]
    epoch = meta.get("epoch")
    return FilterSnapshot(ref.step, int(epoch) if isinstance(epoch, int) else 0, kernels, towers)


def _conv1_keys(name: str) -> bool:
    """conv1's weight tensors of either architecture: the paper net's per-tower ones, torchvision's one."""
    return name.startswith("model.") and name.endswith(".weight") and ("conv1" in name or name == "model.features.0.weight")

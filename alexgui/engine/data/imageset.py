"""Images as arrays and batches: the ImageSet a run trains on, from the decoded cache or decoded on the fly."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from alexgui.engine.data.cache import DecodedCache
from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.data.walk import Skipped, Stamp, display_path
from alexgui.errors import AlexguiError

Batch = tuple[torch.Tensor, torch.Tensor]


def in_lockstep() -> bool:
    """Whether other processes must take as many steps as this one: torch.distributed is set up
    with more than one process (each collective of a step waits for every rank)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class ImageSet:
    """Images already vetted by the pre-flight, each with its label.

    With a cache, pixels come from the memory map (no decoding). Without one, files are decoded on
    the fly; a file that can no longer be decoded (deleted or damaged after the pre-flight) is
    dropped from its batch and recorded in `failed` instead of stopping training, so such a batch is
    smaller than the rest, and a batch whose files all failed is not yielded at all. Files marked in
    `excluded` (changes.py: vanished since the pre-flight) are dropped from their batches the same
    way, cached or not. `stamps` holds each file's (size, mtime_ns, inode) at the pre-flight.

    Distributed, the set that feeds training steps (`lockstep`, set by prepare_dataset) never leaves
    a batch out, because each rank excludes files on its own and a rank with fewer steps would hang
    the others in a collective: a batch whose files were all excluded is taken from the cache as it
    was decoded at the pre-flight, and one whose files all failed to decode (no cache) is replaced by
    the last batch that did decode (trained on twice; a rare event, and the run goes on).
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int] | np.ndarray,
        size: int = 256,
        cache: DecodedCache | None = None,
        rows: Sequence[int] | np.ndarray | None = None,
        stamps: Sequence[Stamp | None] | None = None,
    ) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(self.labels) != len(self.paths):
            raise ValueError(f"ImageSet: {len(self.paths)} paths but {len(self.labels)} labels")
        self.size = size
        self.cache = cache
        self.rows = np.asarray(rows if rows is not None else np.arange(len(self.paths)), dtype=np.int64)
        self.failed: list[Skipped] = []  # files that failed to decode after the pre-flight
        self.failed_paths: set[str] = set()
        self.stamps: list[Stamp | None] = list(stamps) if stamps is not None else [None] * len(self.paths)
        self.excluded = np.zeros(len(self.paths), dtype=bool)
        self.reported: set[int] = set()  # files whose change changes.py has reported
        self.failures_reported = 0  # how many of `failed` changes.py has reported
        self.lockstep = False  # feeds the training steps: no batch is left out when distributed
        self._last_batch: Batch | None = None  # the stand-in for a batch that failed whole, in lockstep

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def cached(self) -> bool:
        return self.cache is not None

    def get(self, i: int) -> np.ndarray:
        """Image i as (size, size, 3) uint8; raises ImageError if it has to be decoded and cannot be."""
        if self.cache is not None:
            return np.array(self.cache.images[self.rows[i]])
        return load_256(self.paths[i], self.size)

    def batches(
        self, indices: np.ndarray | Sequence[int], batch_size: int, workers: int = 0, pin_memory: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 (B, size, size, 3), int64 (B,)) CPU tensors over `indices` in the order given.

        `workers` decoding processes are used only without a cache. Pinned memory is used only
        when asked and CUDA is available.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        order = np.asarray(indices, dtype=np.int64).reshape(-1)
        pin = pin_memory and torch.cuda.is_available()
        if self.cache is not None:
            return self._cached_batches(order, batch_size, pin)
        return self._decoded_batches(order, batch_size, workers, pin)

    def _cached_batches(self, order: np.ndarray, batch_size: int, pin: bool) -> Iterator[Batch]:
        assert self.cache is not None
        even = self.lockstep and in_lockstep()
        for start in range(0, len(order), batch_size):
            chosen = self._kept(order[start : start + batch_size])
            if not len(chosen):
                if not even:
                    continue
                chosen = order[start : start + batch_size]  # the pixels cached at the pre-flight are still there
            # One fancy-index copy out of the memory map per batch: no per-image Python work.
            pixels = np.asarray(self.cache.images[self.rows[chosen]]).view(np.ndarray)
            images = torch.from_numpy(pixels)
            labels = torch.from_numpy(self.labels[chosen].copy())
            if pin:
                images, labels = images.pin_memory(), labels.pin_memory()
            yield images, labels

    def _decoded_batches(self, order: np.ndarray, batch_size: int, workers: int, pin: bool) -> Iterator[Batch]:
        even = self.lockstep and in_lockstep()
        chunks = [self._kept(order[i : i + batch_size]).tolist() for i in range(0, len(order), batch_size)]
        if not even:
            chunks = [chunk for chunk in chunks if chunk]
        if not chunks:
            return
        loader = DataLoader(
            _DecodingDataset(self.paths, self.labels, self.size),
            batch_sampler=chunks,
            num_workers=max(0, workers),
            collate_fn=_collate_dropping_failures,
            pin_memory=pin,
        )
        for images, labels, failures in loader:
            for path, reason in failures:
                if path not in self.failed_paths:  # report a file once, not once per epoch
                    self.failed_paths.add(path)
                    self.failed.append(Skipped(display_path(path), reason))
            if len(labels):
                if even:
                    self._last_batch = (images, labels)
                yield images, labels
            elif even:
                if self._last_batch is None:  # ending this rank ends the run (torchrun stops the others)
                    raise AlexguiError(
                        "every file of a training batch failed to decode before any batch did; a distributed "
                        "run cannot leave a batch out (see the run's data changes)"
                    )
                yield self._last_batch

    def _kept(self, chosen: np.ndarray) -> np.ndarray:
        # Dropping within the batch keeps every other batch's boundaries where they were.
        return chosen[~self.excluded[chosen]]


class _DecodingDataset(Dataset):
    # Holds only paths and labels: it is pickled into each DataLoader worker.
    def __init__(self, paths: list[str], labels: np.ndarray, size: int) -> None:
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, int, str | None, str]:
        path = self.paths[i]
        try:
            return load_256(path, self.size), int(self.labels[i]), None, path
        except ImageError as e:
            return None, int(self.labels[i]), e.reason, path


def _collate_dropping_failures(
    items: list[tuple[np.ndarray | None, int, str | None, str]],
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Stack the images that decoded; report (path, reason) for those that did not."""
    good = [(image, label) for image, label, _reason, _path in items if image is not None]
    failures = [(path, reason) for image, _label, reason, path in items if image is None and reason is not None]
    if good:
        images = torch.from_numpy(np.stack([image for image, _ in good]))
        labels = torch.tensor([label for _, label in good], dtype=torch.int64)
    else:
        images = torch.empty((0, 0, 0, 3), dtype=torch.uint8)
        labels = torch.empty((0,), dtype=torch.int64)
    return images, labels, failures

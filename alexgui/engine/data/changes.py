"""Data that changed under a running training: files that vanished or changed since the pre-flight.

At each epoch's end the loop asks `data_changes` what happened to the files since the pre-flight:
every file is stat'ed again and compared with its stamp (size, mtime_ns, inode) from the walk, and
the files that failed to decode during the epoch (without the cache, workers decode every epoch) are
collected. Each file is reported once per run; a file that vanished, became unreadable or failed is
excluded from later batches, so the run goes on with the rest (distributed, where every rank must
take the same number of steps, a batch is never left out: see ImageSet). A file that changed but is still
there stays in: from the cache the run keeps the image as it was decoded, without it the file is
read as it is now. The stat pass costs one os.stat per file per epoch (3,100 files took 0.02 s on a
local disk, so ImageNet's 1.28 million take seconds), small next to an epoch's training.
"""

from __future__ import annotations

import os

from alexgui.engine.data.dataset import PreparedData
from alexgui.engine.data.imageset import ImageSet
from alexgui.engine.data.walk import Skipped, display_path, special_file_reason
from alexgui.engine.events import DataChanged


def find_changes(images: ImageSet) -> list[Skipped]:
    """The files of `images` not reported before that vanished, changed or failed to decode since
    the pre-flight; those that can no longer be read are excluded from later batches."""
    found: list[Skipped] = []
    for i, path in enumerate(images.paths):
        if i in images.reported:
            continue
        if path in images.failed_paths:  # failed in a worker: its reason is in images.failed
            images.reported.add(i)
            images.excluded[i] = True
            continue
        reason, gone = _compare(path, images.stamps[i], images.cached)
        if reason is None:
            continue
        images.reported.add(i)
        if gone:
            images.excluded[i] = True
        found.append(Skipped(display_path(path), reason))
    new_failures = images.failed[images.failures_reported :]
    images.failures_reported = len(images.failed)
    return [*(Skipped(f.path, f"failed to decode since the pre-flight: {f.reason}") for f in new_failures), *found]


def data_changes(data: PreparedData, step: int, epoch: int) -> list[DataChanged]:
    """One DataChanged event for what changed in the training and validation files, or none."""
    files = find_changes(data.train) + find_changes(data.val)
    if not files:
        return []
    left = (int((~data.train.excluded).sum()), int((~data.val.excluded).sum()))
    return [
        DataChanged(
            step, epoch, files=[{"path": f.path, "reason": f.reason} for f in files],
            train_images=left[0], val_images=left[1],
        )
    ]


def _compare(path: str, stamp: tuple[int, int, int] | None, cached: bool) -> tuple[str | None, bool]:
    """(why the file is not as it was, or None; whether it can no longer be used)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "vanished since the pre-flight; left out of the rest of the run", True
    except OSError as e:
        return f"unreadable since the pre-flight ({e.strerror or e}); left out of the rest of the run", True
    special = special_file_reason(st.st_mode)
    if special is not None:
        return f"no longer a regular file ({special}); left out of the rest of the run", True
    if stamp is None or (st.st_size, st.st_mtime_ns, st.st_ino) == tuple(stamp):
        return None, False
    if cached:
        return "changed since the pre-flight; the run goes on with the image as it was cached", False
    return "changed since the pre-flight; read as it is now", False

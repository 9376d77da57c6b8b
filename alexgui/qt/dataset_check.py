"""A dataset folder is checked when it is chosen, not when Start is pressed.

A folder without class folders, or whose class folders hold no images, used to be taken by the
form and refused only at Start, leaving a failed run in the runs list. `check_dataset` runs the
engine's own scan (the rules Start applies: class folders, train/ and val/, at least two classes)
and looks for images among the files; `DatasetChecker` runs it on a worker thread, since a large
dataset's scan lists every file, and reports the folder as accepted (with what it holds) or refused
(with the engine's reason).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject, Signal

from alexgui.config import DataConfig
from alexgui.engine.data.dataset import DatasetError, scan_folder
from alexgui.engine.data.imageio import ImageError, decode_image
from alexgui.errors import AlexguiError
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.workers import describe_error

# Files without a known image extension may still be images (the pre-flight decodes by content):
# this many are decoded before a folder is called imageless.
DECODE_TRIES = 8


@dataclass(frozen=True)
class DatasetSummary:
    """What a checked folder holds, for the status bar."""

    root: str
    classes: int
    train: int
    val: int

    def text(self) -> str:
        return f"Dataset: {self.root} · {self.classes} classes · {self.train} training and {self.val} validation files"


def _image_suffixes() -> set[str]:
    Image.init()  # registers every format Pillow can open, so the list is complete
    return {suffix.lower() for suffix in Image.registered_extensions()}


def check_dataset(
    folder: str | os.PathLike[str],
    stop: threading.Event | None = None,
    progress: Callable[..., Any] | None = None,
) -> DatasetSummary:
    """The folder's classes and files as Start would find them; raises DatasetError when it has none.

    `stop` and `progress` are the worker's (workers.Job); the scan itself cannot be interrupted."""
    data = DataConfig()
    index = scan_folder(folder, data.val_fraction, data.split_seed, links_out=data.follow_links)
    files = [s.path for s in index.train] + [s.path for s in index.val]
    suffixes = _image_suffixes()
    if not any(Path(p).suffix.lower() in suffixes for p in files):
        if not any(_decodes(p) for p in files[:DECODE_TRIES] if not (stop and stop.is_set())):
            example = Path(files[0]).name if files else ""
            raise DatasetError(
                f"{index.root}: no images in its class folders ({len(files)} files such as {example!r}, "
                "none of them an image file)"
            )
    return DatasetSummary(str(index.root), len(index.class_names), len(index.train), len(index.val))


def _decodes(path: str) -> bool:
    try:
        decode_image(path)
    except ImageError:
        return False
    return True


class DatasetChecker(JobMixin, QObject):
    """Checks one folder at a time off the GUI thread; a newer request replaces a pending one."""

    accepted = Signal(str, object)  # the folder as chosen, its DatasetSummary
    refused = Signal(str, str)  # the folder as chosen, the reason

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._folder = ""
        self._next: str | None = None

    @property
    def folder(self) -> str:
        """The folder being checked ("" when idle)."""
        return self._folder if self.is_busy() else ""

    def check(self, folder: str | os.PathLike[str]) -> None:
        folder = str(folder)
        if self.is_busy():
            self._next = folder  # the scan cannot be interrupted: the newest choice runs after it
            return
        self._folder = folder
        job = self.new_job(check_dataset, folder)
        job.yielded.connect(lambda summary: self.accepted.emit(folder, summary))
        job.errored.connect(lambda e: self.refused.emit(folder, self._reason(e)))
        job.start()

    @staticmethod
    def _reason(error: BaseException) -> str:
        if isinstance(error, AlexguiError):
            return str(error)
        return f"could not read the folder: {describe_error(error)}"

    def job_done(self, cancelled: bool) -> None:
        folder, self._next = self._next, None
        if folder is not None and not cancelled:
            self.check(folder)

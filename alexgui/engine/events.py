"""What a training run reports, as plain dataclasses.

The trainer yields these; the CLI prints them, the run directory appends them to metrics.jsonl (one
JSON object per line, every line carrying `type`, `step` and `epoch`), and the desktop app plots them.
A reader rebuilds the same events from the log with `event_from_dict`, so a run watched from its
directory looks exactly like one trained in the window.

`step` is the number of optimizer steps since the run began; `epoch` is zero-based.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from alexgui.errors import AlexguiError


@dataclass
class Event:
    step: int
    epoch: int
    time: float = field(default_factory=time.time, kw_only=True)

    @property
    def type(self) -> str:
        return _TYPE_OF[type(self)]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}


@dataclass
class RunStarted(Event):
    """Sent once per start or resume."""

    device: str
    arch: str
    num_classes: int
    class_names: list[str]
    train_images: int
    val_images: int
    steps_per_epoch: int
    epochs: int
    resumed: bool = False
    # A fine-tuned run: where it started and what it trains ("fine-tuned from torchvision (...): trained the
    # last layer, ..."); and how many of the network's parameters learn. Empty and 0 for a run from scratch.
    start: str = ""
    trainable_params: int = 0


@dataclass
class PreflightReport(Event):
    """Files found and excluded before training, each with the reason."""

    images_ok: int
    skipped: list[dict[str, str]]  # [{"path": ..., "reason": ...}]


@dataclass
class Progress(Event):
    """Work before the first step (scanning, decoding into the cache, statistics)."""

    stage: str
    done: int
    total: int


@dataclass
class StepDone(Event):
    batch: int  # index of the batch within the epoch
    batches: int  # batches in the epoch
    loss: float
    top1_err: float  # on this training batch
    top5_err: float
    lr: float
    images_per_s: float  # this step's images over its wall time, data loading included
    tower_ms: list[float] | None = None  # two-device placement: forward ms of tower 0 and tower 1 this step
    cross_bytes: int | None = None  # two-device placement: bytes passed between the towers this step


@dataclass
class EpochDone(Event):
    train_loss: float
    train_top1_err: float
    train_top5_err: float
    val_loss: float | None
    val_top1_err: float | None
    val_top5_err: float | None
    lr: float
    seconds: float
    ten_crop: bool = False


@dataclass
class DataChanged(Event):
    """Files that vanished, changed or stopped decoding since the pre-flight, noticed at an epoch's
    end; the run goes on with the rest (train_images and val_images: how many are still used)."""

    files: list[dict[str, str]]  # [{"path": ..., "reason": ...}], paths printable
    train_images: int
    val_images: int


@dataclass
class KernelSnapshot(Event):
    """conv1's kernels measured at a snapshot (the run's start, then every TrainControl.snapshot_seconds).

    Per tower, in tower order (one entry for a one-tower network): the mean colour specificity and
    the median structure score (engine/model/kernel_scores.py), so a log shows Figure 3 forming.
    The structure fields may be absent from a line (None): readers plot what is there.
    """

    colour_specificity: list[float]
    structure: list[float] | None = None
    structure_all: float | None = None  # the median over all the layer's kernels, towers together


@dataclass
class LrDropped(Event):
    old_lr: float
    new_lr: float
    reason: str


@dataclass
class CheckpointSaved(Event):
    path: str
    kind: str  # "last", "best" or "manual"


@dataclass
class Paused(Event):
    pass


@dataclass
class Resumed(Event):
    pass


@dataclass
class Finished(Event):
    reason: str  # "epochs" or "max_steps"


@dataclass
class Stopped(Event):
    """The user asked to stop; the last checkpoint holds everything up to `step`."""

    checkpoint: str | None


@dataclass
class Failed(Event):
    message: str
    checkpoint: str | None = None  # the last good checkpoint, if any


EVENT_TYPES: dict[str, type[Event]] = {
    "run_started": RunStarted,
    "preflight": PreflightReport,
    "progress": Progress,
    "step": StepDone,
    "epoch": EpochDone,
    "data_changed": DataChanged,
    "kernels": KernelSnapshot,
    "lr_dropped": LrDropped,
    "checkpoint": CheckpointSaved,
    "paused": Paused,
    "resumed": Resumed,
    "finished": Finished,
    "stopped": Stopped,
    "failed": Failed,
}
_TYPE_OF = {cls: name for name, cls in EVENT_TYPES.items()}


class UnknownEvent(AlexguiError, ValueError):
    """A metrics-log line that is not an alexgui event (or lacks fields); the log reader reports it."""


def event_from_dict(d: dict[str, Any]) -> Event:
    """Rebuild an event from a metrics.jsonl line; unknown keys from newer versions are ignored."""
    try:
        cls = EVENT_TYPES[d["type"]]
    except (KeyError, TypeError):
        raise UnknownEvent(f"not an alexgui event: {str(d)[:80]}") from None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in d.items() if k in names})
    except TypeError as e:
        raise UnknownEvent(f"{d.get('type')} event is missing fields ({e})") from None

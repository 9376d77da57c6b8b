"""How a caller steers a run and how a run ends badly: TrainControl's requests, honoured between
steps, and TrainingError for what ends a run with a message for the user."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from alexgui.errors import AlexguiError


class TrainingError(AlexguiError, RuntimeError):
    """A problem that ends the run; the message is meant for the user."""


@dataclass
class TrainControl:
    """Requests from another thread (the GUI, a signal handler), honoured between steps."""

    stop: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)
    save_now: threading.Event = field(default_factory=threading.Event)
    # Called from the training thread with CPU copies of the conv kernels ({layer: (out,in,kh,kw)})
    # at most every `snapshot_seconds`, for live filter views. Must be cheap and thread-safe.
    on_kernels: Callable[[dict[str, torch.Tensor]], None] | None = None
    # Also paces the KernelSnapshot events (conv1's scores) in the metrics log, watched or not.
    snapshot_seconds: float = 10.0

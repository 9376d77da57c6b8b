"""conv1's kernels at each snapshot: scored for the metrics log, handed to a watcher, kept on disk.

The training loop calls `snapshot_kernels` at the run's start and every TrainControl.snapshot_seconds.
The scores go into the log (KernelSnapshot), every conv layer's kernels go to TrainControl.on_kernels
when a window watches, and the main process writes conv1 into the run folder's filter history
(engine/store/filter_history.py), from which the Filters panel's slider and `alexgui filters` replay
Figure 3 forming. A history file that cannot be written (a full disk) costs that frame, not the run.
"""

from __future__ import annotations

import warnings

import torch

from alexgui.engine.events import KernelSnapshot
from alexgui.engine.model.base import CONV_LAYERS, AlexNetBase
from alexgui.engine.model.kernel_scores import kernel_snapshot
from alexgui.engine.store.filter_history import write_snapshot
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.control import TrainControl


def snapshot_kernels(model: AlexNetBase, control: TrainControl, run: RunDir, step: int, epoch: int,
                     keep_history: bool) -> KernelSnapshot:
    """The log's record of conv1 now; conv1 saved to the run's history when `keep_history` (the main process)."""
    layers = CONV_LAYERS if control.on_kernels is not None else ("conv1",)
    with torch.no_grad():
        kernels = {name: model.kernels(name).detach().float().cpu().clone() for name in layers}
    towers = model.kernel_towers("conv1")
    if keep_history:
        try:
            write_snapshot(run.path, step, epoch, kernels["conv1"].numpy(), towers)
        except OSError as e:
            warnings.warn(f"{run.path}: filter history snapshot at step {step} not written ({e.strerror or e})",
                          RuntimeWarning, stacklevel=2)
    event = kernel_snapshot(step, epoch, kernels["conv1"], towers)
    if control.on_kernels is not None:
        control.on_kernels(kernels)
    return event

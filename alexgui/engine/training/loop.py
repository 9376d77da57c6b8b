"""The training loop as a generator of events: `train`, the one entry point.

Nothing here knows a window exists: the CLI prints the events, the desktop app plots them. This module
claims the run directory, runs a Trainer (trainer.py: set-up, steps, epochs, checkpoints) and turns
every way a run can end (stopped, a user error, out of memory, a bug) into a final event the user can
read, with the checkpoint to continue from.

The pieces around the loop have files of their own: control.py (TrainControl, TrainingError),
checkpoints.py (the checkpoint's schema, resuming), evaluation.py (validation, ten crops),
background.py (threads that report progress or read ahead), precision.py (bf16, channels-last).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from alexgui.config import RunConfig
from alexgui.engine.events import (
    Event,
    Failed,
    Stopped,
)
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.checkpoints import (
    check_resumable,
)
from alexgui.engine.training.control import TrainControl
from alexgui.engine.training.distributed import (
    SINGLE_PROCESS,
    DistContext,
)
from alexgui.engine.training.memory import reusing_freed_memory
from alexgui.engine.training.trainer import Trainer
from alexgui.errors import AlexguiError, Cancelled


def train(
    cfg: RunConfig,
    run: RunDir,
    control: TrainControl | None = None,
    resume: bool = False,
    dist: DistContext | None = None,
) -> Iterator[Event]:
    """Train per `cfg`, writing to `run`; yields events until Finished, Stopped or Failed.

    `dist` places this process in a data-parallel run (see training/distributed.py); None: one process.
    """
    with reusing_freed_memory():  # steps reuse the last step's memory (see training/memory.py)
        # The run's model, optimiser and gradients are freed when _train_events ends, before the
        # memory it kept is handed back.
        yield from _train_events(cfg, run, control or TrainControl(), resume, dist)


def _train_events(cfg: RunConfig, run: RunDir, control: TrainControl, resume: bool, dist: DistContext | None) -> Iterator[Event]:
    dist = dist or SINGLE_PROCESS
    if dist.is_main:  # one writer per run (ranks other than 0 write nothing); refused before any write
        run.claim()
    try:
        if resume:
            check_resumable(run)  # a log without its checkpoint is not silently started over
    except BaseException:
        run.close()
        raise
    trainer = Trainer(cfg, run, control, dist)
    try:
        yield from trainer.run(resume)
    except Cancelled:  # the checkpoint resumed from is still there to continue from
        yield trainer.emit(Stopped(trainer.step, trainer.epoch, checkpoint=trainer.last_saved or trainer.resumed_from))
    except AlexguiError as e:  # their messages are written for the user
        yield trainer.emit(Failed(trainer.step, trainer.epoch, message=str(e), checkpoint=trainer.last_saved))
    except torch.cuda.OutOfMemoryError:
        message = (
            f"{cfg.train.device} ran out of memory at batch size {cfg.train.batch_size}. "
            "Try a smaller batch size, bf16, or another device."
        )
        yield trainer.emit(Failed(trainer.step, trainer.epoch, message=message, checkpoint=trainer.last_saved))
    except Exception as e:  # noqa: BLE001 - the run must end with an event the user can read
        message = f"training stopped by an unexpected error: {type(e).__name__}: {e}"
        yield trainer.emit(Failed(trainer.step, trainer.epoch, message=message, checkpoint=trainer.last_saved))
    finally:
        run.close()  # the log synced and the writer lock given up: the run may be resumed now

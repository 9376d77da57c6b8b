"""Terminal output for a training run: a live bar with speed and ETA, and the run's events in words.

The words are engine/training/narrative.py's, as the app's log shows them; speed and ETA come from the
engine's RunHistory, as the app's monitor shows them. On a terminal the bar redraws in place; in a log
file (a server's nohup.out, CI) it prints a plain line every few seconds instead, so logs stay readable.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TextIO

from alexgui.engine.events import Event, Failed, Progress, RunStarted, StepDone, Stopped
from alexgui.engine.training.history import RunHistory
from alexgui.engine.training.narrative import describe_event
from alexgui.formatting import format_duration

_PLAIN_LINE_SECONDS = 10.0


def bar(fraction: float, width: int) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(fraction * width)
    return "█" * full + "·" * (width - full)


class TrainPrinter:
    def __init__(self, out: TextIO, run_path: Path, lr: float | None = None, max_steps: int = 0) -> None:
        self.out = out
        self.run_path = run_path
        self.lr = lr
        self.tty = out.isatty()
        self.exit_code = 0
        self.history = RunHistory(run_path.name)
        self.history.max_steps = max_steps
        self._bar_shown = False
        self._last_plain = 0.0

    def note(self, text: str) -> None:
        self._clear_bar()
        print(text, file=self.out, flush=True)

    def show(self, event: Event) -> None:
        self.history.add([event])
        if isinstance(event, Progress):
            frac = event.done / event.total if event.total else 0.0
            self._draw(f"{event.stage:<30} {bar(frac, 24)} {event.done}/{event.total}", force=event.done >= event.total)
            return
        if isinstance(event, StepDone):
            self._draw(self._step_line(event), force=False)
            return
        started = self.history.started
        for level, text in describe_event(event, started.epochs if started else None):
            if level == "muted" and self.tty and getattr(event, "kind", "") == "last":
                continue  # periodic checkpoints: in the log file and the run folder, not between bars
            self.note(text)
        if isinstance(event, RunStarted):
            self._hint(event)
        elif isinstance(event, Stopped):
            self.exit_code = 130
            if event.checkpoint:
                self.note(f"Continue with: alexgui train --out {self.run_path} --resume")
            else:  # stopped before the first checkpoint (e.g. in the pre-flight): nothing to continue
                self.note(f"Nothing was saved yet; start it again with: alexgui train --out {self.run_path} --restart")
        elif isinstance(event, Failed):
            self.exit_code = 1
        elif event.type == "finished":
            self.note(f"run directory: {self.run_path}")

    def _hint(self, e: RunStarted) -> None:
        if self.lr is not None and self.lr >= 0.005 and e.num_classes < 100 and not e.resumed:
            self.note(
                f"hint: the paper's learning rate {self.lr:g} is tuned for 1000 classes; with {e.num_classes} the first "
                "steps may overshoot (loss far above ln(classes)). If the loss stays high, try --lr 0.001."
            )

    def _step_line(self, e: StepDone) -> str:
        epochs = self.history.started.epochs if self.history.started else 0
        in_epoch, in_run = self.history.eta()
        eta = "–" if in_epoch is None else format_duration(in_epoch)
        total = "" if in_run is None else f" (run {format_duration(in_run)})"
        speed = self.history.column("ips_smooth")[-1]
        return (
            f"epoch {e.epoch + 1}/{epochs} {bar(e.batch / max(e.batches, 1), 24)} {e.batch}/{e.batches} "
            f"loss {e.loss:.3f} top-1 err {e.top1_err:.1%} lr {e.lr:.0e} {speed:.1f} img/s ETA {eta}{total}"
        )

    # -- drawing ------------------------------------------------------------------------------

    def _draw(self, text: str, force: bool) -> None:
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self.out.write("\r" + text[:width].ljust(width))
            self.out.flush()
            self._bar_shown = True
            return
        now = time.monotonic()
        if force or now - self._last_plain >= _PLAIN_LINE_SECONDS:
            self._last_plain = now
            print(text, file=self.out, flush=True)

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.out.write("\r" + " " * (shutil.get_terminal_size((120, 20)).columns - 1) + "\r")
            self._bar_shown = False

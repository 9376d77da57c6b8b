"""Terminal output for a training run: a live bar with speed and ETA, a line per epoch.

On a terminal the bar redraws in place; in a log file (a server's nohup.out, CI) it prints a plain
line every few seconds instead, so logs stay readable.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TextIO

from alexgui.engine.events import (
    CheckpointSaved,
    EpochDone,
    Event,
    Failed,
    Finished,
    LrDropped,
    Paused,
    PreflightReport,
    Progress,
    Resumed,
    RunStarted,
    StepDone,
    Stopped,
)
from alexgui.formatting import format_duration

_PLAIN_LINE_SECONDS = 10.0


def bar(fraction: float, width: int) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(fraction * width)
    return "█" * full + "·" * (width - full)


class TrainPrinter:
    def __init__(self, out: TextIO, run_path: Path, lr: float | None = None) -> None:
        self.out = out
        self.run_path = run_path
        self.lr = lr
        self.tty = out.isatty()
        self.exit_code = 0
        self._bar_shown = False
        self._last_plain = 0.0
        self._epochs = 0
        self._speed: float | None = None
        self._last_step_time: float | None = None

    def note(self, text: str) -> None:
        self._clear_bar()
        print(text, file=self.out, flush=True)

    def show(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    # -- per event ----------------------------------------------------------------------------

    def _on_progress(self, e: Progress) -> None:
        label = e.stage
        frac = e.done / e.total if e.total else 0.0
        self._draw(f"{label:<30} {bar(frac, 24)} {e.done}/{e.total}", force=e.done >= e.total)

    def _on_preflight(self, e: PreflightReport) -> None:
        self._clear_bar()
        print(f"pre-flight: {e.images_ok} images ok, {len(e.skipped)} skipped", file=self.out)
        for item in e.skipped[:20]:
            print(f"  skipped {item['path']}: {item['reason']}", file=self.out)
        if len(e.skipped) > 20:
            print(f"  ... and {len(e.skipped) - 20} more (see {self.run_path / 'preflight.json'})", file=self.out)
        self.out.flush()

    def _on_run_started(self, e: RunStarted) -> None:
        self._epochs = e.epochs
        verb = "resuming" if e.resumed else "training"
        self.note(
            f"{verb} {e.arch} AlexNet on {e.device}: {e.num_classes} classes, {e.train_images} train / "
            f"{e.val_images} val images, {e.steps_per_epoch} steps per epoch, {e.epochs} epochs"
            + (f" (from step {e.step})" if e.resumed else "")
        )
        if self.lr is not None and self.lr >= 0.005 and e.num_classes < 100 and not e.resumed:
            self.note(
                f"hint: the paper's learning rate {self.lr:g} is tuned for 1000 classes; with {e.num_classes} the first "
                "steps may overshoot (loss far above ln(classes)). If the loss stays high, try --lr 0.001."
            )

    def _on_step(self, e: StepDone) -> None:
        self._speed = e.images_per_s if self._speed is None else 0.9 * self._speed + 0.1 * e.images_per_s
        now = time.monotonic()
        per_step = None
        if self._last_step_time is not None:
            per_step = now - self._last_step_time
        self._last_step_time = now
        remaining = e.batches - e.batch
        eta = format_duration(remaining * per_step) if per_step is not None else "–"
        text = (
            f"epoch {e.epoch + 1}/{self._epochs} {bar(e.batch / max(e.batches, 1), 24)} {e.batch}/{e.batches} "
            f"loss {e.loss:.3f} top-1 err {e.top1_err:.1%} lr {e.lr:.0e} {self._speed:.1f} img/s ETA {eta}"
        )
        self._draw(text, force=False)

    def _on_epoch(self, e: EpochDone) -> None:
        val = (
            f"val loss {e.val_loss:.3f} top-1 err {e.val_top1_err:.1%} top-5 err {e.val_top5_err:.1%}"
            if e.val_top1_err is not None
            else "no validation"
        )
        crops = " (10 crops)" if e.ten_crop else ""
        self.note(
            f"epoch {e.epoch + 1}/{self._epochs}: train loss {e.train_loss:.3f} top-1 err {e.train_top1_err:.1%} "
            f"| {val}{crops} | lr {e.lr:.0e} | {format_duration(e.seconds)}"
        )

    def _on_lr_dropped(self, e: LrDropped) -> None:
        self.note(f"learning rate {e.old_lr:.0e} -> {e.new_lr:.0e}: {e.reason}")

    def _on_checkpoint(self, e: CheckpointSaved) -> None:
        if e.kind != "last" or not self.tty:
            self.note(f"checkpoint ({e.kind}) written: {e.path}")

    def _on_paused(self, e: Paused) -> None:
        self.note(f"paused at step {e.step}")

    def _on_resumed(self, e: Resumed) -> None:
        self.note(f"resumed at step {e.step}")

    def _on_finished(self, e: Finished) -> None:
        why = "reached --max-steps" if e.reason == "max_steps" else "all epochs done"
        self.note(f"finished at step {e.step} ({why}); run directory: {self.run_path}")

    def _on_stopped(self, e: Stopped) -> None:
        self.exit_code = 130
        self.note(
            f"stopped at step {e.step}; checkpoint {e.checkpoint}. "
            f"Continue with: alexgui train --out {self.run_path} --resume"
        )

    def _on_failed(self, e: Failed) -> None:
        self.exit_code = 1
        self._clear_bar()
        print(f"alexgui train: {e.message}", file=self.out, flush=True)
        if e.checkpoint:
            print(f"the last good checkpoint is {e.checkpoint}", file=self.out, flush=True)

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

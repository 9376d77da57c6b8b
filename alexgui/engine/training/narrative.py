"""A run's events in words: the one description that the app's log and `alexgui train` both print.

describe_event(event) gives (level, text) lines for the events worth reading; steps and progress
ticks and kernel snapshots give none (the app draws them, the terminal shows them in its live bar). Levels: info, good,
warn, error, muted (the app colours them; the terminal ignores them).
"""

from __future__ import annotations

from alexgui.engine.events import (
    CheckpointSaved,
    DataChanged,
    EpochDone,
    Event,
    Failed,
    Finished,
    KernelSnapshot,
    LrDropped,
    Paused,
    PreflightReport,
    Progress,
    Resumed,
    RunStarted,
    StepDone,
    Stopped,
)

MAX_SKIPPED_LINES = 30  # the full list is in the run's preflight.json

Line = tuple[str, str]  # (level, text)


def percent(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def describe_event(ev: Event, epochs: int | None = None) -> list[Line]:
    """(level, text) lines for an event worth reading; `epochs`, when known, numbers epochs "3 of 90"."""
    if isinstance(ev, (StepDone, Progress, KernelSnapshot)):  # kernel scores: shown beside the kernels
        return []
    if isinstance(ev, RunStarted):
        verb = f"Resumed from step {ev.step}" if ev.resumed else "Started"
        return [("info", f"{verb}: {ev.arch} AlexNet on {ev.device}, {ev.num_classes} classes, "
                         f"{ev.train_images} training / {ev.val_images} validation images, "
                         f"{ev.steps_per_epoch} steps per epoch, {ev.epochs} epochs")] + (
            [("info", f"{ev.start[0].upper()}{ev.start[1:]}; {ev.trainable_params:,} parameters learn")] if ev.start else [])
    if isinstance(ev, PreflightReport):
        return _preflight(ev)
    if isinstance(ev, EpochDone):
        crops = "10-crop" if ev.ten_crop else "centre-crop"
        val = (f"val loss {ev.val_loss:.3f}, top-1 {percent(ev.val_top1_err)}, top-5 {percent(ev.val_top5_err)} ({crops})"
               if ev.val_loss is not None else "no validation images")
        of = f" of {epochs}" if epochs else ""
        return [("info", f"Epoch {ev.epoch + 1}{of} done in {ev.seconds:.0f} s: train loss {ev.train_loss:.3f}, "
                         f"top-1 {percent(ev.train_top1_err)}, top-5 {percent(ev.train_top5_err)}; {val}")]
    if isinstance(ev, DataChanged):
        return _data_changed(ev)
    if isinstance(ev, LrDropped):
        return [("warn", f"Learning rate {ev.old_lr:g} → {ev.new_lr:g}: {ev.reason}")]
    if isinstance(ev, CheckpointSaved):
        return [("muted", f"Checkpoint ({ev.kind}) saved at step {ev.step}: {ev.path}")]
    if isinstance(ev, Paused):
        return [("info", f"Paused at step {ev.step}")]
    if isinstance(ev, Resumed):
        return [("info", f"Resumed at step {ev.step}")]
    if isinstance(ev, Finished):
        return [("good", f"Finished at step {ev.step} ({ev.reason.replace('_', ' ')})")]
    if isinstance(ev, Stopped):
        where = f"; checkpoint {ev.checkpoint}" if ev.checkpoint else ""
        return [("info", f"Stopped at step {ev.step}{where}")]
    if isinstance(ev, Failed):
        where = f" The last good checkpoint is {ev.checkpoint}." if ev.checkpoint else ""
        return [("error", f"Failed at step {ev.step}: {ev.message.rstrip('.')}.{where}")]
    return [("muted", f"{ev.type} at step {ev.step}")]


def _data_changed(ev: DataChanged) -> list[Line]:
    lines = [("warn", f"Data changed in epoch {ev.epoch + 1}: {len(ev.files)} file(s); training goes on with "
                      f"{ev.train_images} training / {ev.val_images} validation images:")]
    return lines + _file_lines(ev.files, "")


def _file_lines(files: list[dict[str, str]], where: str) -> list[Line]:
    lines = [("warn", f"    {item.get('path', '?')}: {item.get('reason', '?')}") for item in files[:MAX_SKIPPED_LINES]]
    if len(files) > MAX_SKIPPED_LINES:
        lines.append(("warn", f"    … and {len(files) - MAX_SKIPPED_LINES} more{where}"))
    return lines


def _preflight(ev: PreflightReport) -> list[Line]:
    if not ev.skipped:
        return [("good", f"Pre-flight: {ev.images_ok} images OK, none skipped")]
    lines = [("warn", f"Pre-flight: {ev.images_ok} images OK, {len(ev.skipped)} skipped:")]
    return lines + _file_lines(ev.skipped, " (see preflight.json in the run folder)")

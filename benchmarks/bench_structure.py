"""Figure 3 forming: the conv1 structure score against wall-clock time for the app's first-launch training.

Trains exactly what a new user gets by pressing Start (TrainSettingsForm.first_launch_config(): the
demo data and the quick demo preset), headless on this machine (the CPU unless --device says
otherwise), for --minutes of wall-clock time from the moment "Start" is pressed, data preparation
included. The training loop logs a KernelSnapshot every --sample-seconds (conv1's structure score,
engine/model/kernel_scores.py: about 0 for the N(0, 0.01) noise training starts from, 0.6 to 0.9
for smooth edges and colour blobs); this records them with the time they were taken and the latest
validation error, so speed-ups of Figure 3 can be weighed against accuracy at the same time.

With --baseline, the same settings with the paper's conv1 (N(0, 0.01) at the start, the other layers'
learning rate) train next, for the same wall-clock time, in the same process: the quick preset's changes
for Figure 3 weighed side by side, for the score and for the validation error reached in the same time.
With --fp32, where the first launch trains in bf16 (a CPU with bf16 instructions: precision.py), the same
settings in fp32 train next: what the app's bf16 default changes in what a user sees in those minutes.

Writes, into --out (benchmarks/results/ by default): structure-vs-time.csv, structure-vs-time.png
(matplotlib, Agg) and structure-vs-time.md (settings, machine, when the score first reached the
issue's 0.5, and the final figures, per variant). The run folders themselves are temporary and deleted.

Usage: python -m benchmarks.bench_structure [--minutes 5] [--sample-seconds 10] [--device cpu] [--baseline] [--fp32]
           [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # only the form's settings are read, no window

from alexgui.engine.training.memory import share_one_heap

share_one_heap()  # as `alexgui` does at start, before torch starts a thread

from alexgui.config import RunConfig, TrainConfig  # noqa: E402
from alexgui.engine.events import EpochDone, Event, Failed, KernelSnapshot, RunStarted, StepDone  # noqa: E402
from alexgui.engine.store.rundir import RunDir  # noqa: E402
from alexgui.engine.training.control import TrainControl  # noqa: E402
from alexgui.engine.training.loop import train  # noqa: E402
from alexgui.qt.panels.monitor import TrainSettingsForm  # noqa: E402
from benchmarks.machine import describe_cpu  # noqa: E402

TARGET = 0.5  # issue 13: structure >= 0.5 within 5 minutes of pressing Start
TARGET_MINUTES = 5.0
NAME = "structure-vs-time"
COLUMNS = ("variant", "seconds", "train_seconds", "step", "epoch", "structure", "structure_tower0", "structure_tower1",
           "colour_tower0", "colour_tower1", "val_top1_err")


@dataclass
class Sample:
    variant: str
    seconds: float  # since Start
    train_seconds: float | None  # since the first step could start (RunStarted): data preparation left out
    snapshot: KernelSnapshot
    val_top1_err: float | None  # the latest validation error known then (None before the first epoch's end)

    def row(self) -> list[str]:
        s = self.snapshot
        towers = [_tower(s.structure, 0), _tower(s.structure, 1), _tower(s.colour_specificity, 0),
                  _tower(s.colour_specificity, 1)]
        values = [self.variant, self.seconds, self.train_seconds, s.step, s.epoch, s.structure_all, *towers, self.val_top1_err]
        # Empty cells where a figure is unknown (NaN or None), so a spreadsheet reads them as gaps.
        return ["" if v is None or v != v else (f"{v:.4f}" if isinstance(v, float) else str(v)) for v in values]


BASELINE = "paper's conv1"  # its initial std and learning rate: the quick preset before issue 13
FP32 = "first launch in fp32"  # the first launch without the app's bf16 default


@dataclass
class Outcome:
    variant: str
    cfg: RunConfig
    samples: list[Sample]
    prep_seconds: float | None  # Start to RunStarted
    steps: int
    epochs: list[EpochDone]
    failed: str | None


def bench_config(args: argparse.Namespace) -> RunConfig:
    cfg = TrainSettingsForm.first_launch_config()  # what Start trains on a first launch
    if args.device:
        cfg.train.device = args.device
    return cfg  # checkpoints too as the app writes them: their time is part of what a user waits


def run(variant: str, cfg: RunConfig, minutes: float, sample_seconds: float, workdir: Path) -> Outcome:
    """Train until `minutes` have passed since the call; every kernel snapshot with its time."""
    control = TrainControl(snapshot_seconds=sample_seconds)
    timer = threading.Timer(minutes * 60, control.stop.set)  # stop is honoured between steps
    samples: list[Sample] = []
    epochs: list[EpochDone] = []
    started_at: float | None = None
    steps, failed = 0, None
    start = time.monotonic()
    timer.start()
    try:
        rundir = RunDir.create(workdir / variant.replace(" ", "-").replace("'", ""), cfg)
        event: Event
        for event in train(cfg, rundir, control):
            now = time.monotonic() - start
            if isinstance(event, RunStarted):
                started_at = now
            elif isinstance(event, StepDone):
                steps = event.step
            elif isinstance(event, EpochDone):
                epochs.append(event)
            elif isinstance(event, Failed):
                failed = event.message
            elif isinstance(event, KernelSnapshot):
                val = epochs[-1].val_top1_err if epochs else None
                since = None if started_at is None else now - started_at
                samples.append(Sample(variant, now, since, event, val))
                print(f"  {now:6.1f} s  step {event.step:5d}  structure {event.structure_all:+.3f}  "
                      f"towers {', '.join(f'{v:+.3f}' for v in event.structure or [])}", flush=True)
    finally:
        timer.cancel()
    return Outcome(variant, cfg, samples, started_at, steps, epochs, failed)


def write_csv(samples: list[Sample], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(sample.row() for sample in samples)


def write_png(outcomes: list[Outcome], path: Path, title: str) -> None:
    """The score over minutes since Start: all 96 kernels and each tower per variant, the issue's goal marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display, no Qt: a file only
    import matplotlib.pyplot as plt

    nan = float("nan")
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    seen: list[float] = []
    last_minute = TARGET_MINUTES
    for outcome, style in zip(outcomes, ("-", "--", ":")):
        samples = outcome.samples
        if not samples:
            continue
        minutes = [s.seconds / 60 for s in samples]
        last_minute = max(last_minute, minutes[-1])
        overall = [nan if s.snapshot.structure_all is None else s.snapshot.structure_all for s in samples]
        seen += [v for v in overall if v == v]
        ax.plot(minutes, overall, color="black", ls=style, lw=2, marker=".", label=f"{outcome.variant}: all 96 (median)")
        for tower, colour in ((0, "tab:blue"), (1, "tab:orange")):
            values = [_tower(s.snapshot.structure, tower) for s in samples]
            if any(v == v for v in values):  # NaN != NaN: a tower with no value at all is left out
                ax.plot(minutes, values, color=colour, ls=style, lw=1, label=f"{outcome.variant}: tower {tower}")
    ax.axhline(TARGET, color="tab:green", ls="--", lw=1, label=f"goal {TARGET} within {TARGET_MINUTES:g} min")
    ax.axvline(TARGET_MINUTES, color="tab:green", ls=":", lw=1)
    ax.set_xlim(0, last_minute * 1.02)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("minutes since Start (data preparation included)")
    ax.set_ylabel("conv1 structure score")
    ax.set_ylim(min(-0.05, *seen), max(1.0, *(v + 0.05 for v in seen)))  # a score may pass 1 a little
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary(outcomes: list[Outcome], minutes: float) -> str:
    t = outcomes[0].cfg.train
    lines = [
        f"# conv1 structure score against wall-clock time ({minutes:g} min)",
        "",
        f"Machine: {describe_cpu()}; device {t.device}.",
    ]
    for outcome in outcomes:
        cfg, samples = outcome.cfg, outcome.samples
        t = cfg.train
        lines += [
            "",
            f"## {outcome.variant}",
            "",
            f"Settings: data {cfg.data.data}, batch {t.batch_size}, lr {t.lr:g}, momentum {t.momentum:g}, weight decay "
            f"{t.weight_decay:g}, conv1 initial std {t.conv1_init_std:g} and learning rate x{t.conv1_lr_scale:g}, "
            f"{t.epochs} epochs, crop {cfg.data.crop}, bf16 {t.bf16}.",
            f"Data preparation (Start to the first step): {_seconds(outcome.prep_seconds)}; steps trained: {outcome.steps}.",
        ]
        if outcome.failed:
            lines.append(f"The run failed: {outcome.failed}")
        if samples:
            reached = next((s for s in samples if (s.snapshot.structure_all or 0.0) >= TARGET), None)
            best = max(samples, key=lambda s: s.snapshot.structure_all or -1.0)
            last = samples[-1]
            lines.append(f"Structure at the start {samples[0].snapshot.structure_all:.3f}, at the end "
                         f"{last.snapshot.structure_all:.3f} (step {last.snapshot.step}, {last.seconds / 60:.1f} min), "
                         f"best {best.snapshot.structure_all:.3f} at {best.seconds / 60:.1f} min.")
            lines.append(f"Reached {TARGET}: " + (f"after {reached.seconds / 60:.1f} min (step {reached.snapshot.step})."
                                                  if reached else "no."))
        for e in outcome.epochs:
            lines.append(f"Validation after epoch {e.epoch + 1} (step {e.step}): top-1 error "
                         f"{_percent(e.val_top1_err)}, top-5 error {_percent(e.val_top5_err)}.")
    return "\n".join(lines) + "\n"


def _tower(values: list[float] | None, tower: int) -> float:
    """One tower's score from a snapshot's list, NaN where the line has none (old logs, one-tower nets)."""
    return values[tower] if values is not None and tower < len(values) else float("nan")


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} s"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=TARGET_MINUTES, help="wall-clock time from Start (default 5)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="time between kernel snapshots (default 10)")
    parser.add_argument("--device", default="cpu", help="training device (default cpu; '' keeps the app's choice)")
    parser.add_argument("--baseline", action="store_true",
                        help="then train the same settings with the paper's conv1 init for the same time, to compare")
    parser.add_argument("--fp32", action="store_true",
                        help="where the first launch trains in bf16, then train it in fp32 for the same time, to compare")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="folder for the CSV, PNG, MD")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.sample_seconds < 0:
        parser.error("--minutes must be above 0 and --sample-seconds at least 0")

    cfg = bench_config(args)
    variants = [("first launch", cfg)]
    if args.baseline:
        paper_init = copy.deepcopy(cfg)
        paper_init.train.conv1_init_std = TrainConfig.conv1_init_std
        paper_init.train.conv1_lr_scale = TrainConfig.conv1_lr_scale
        variants.append((BASELINE, paper_init))
    if args.fp32 and cfg.train.bf16:
        fp32 = copy.deepcopy(cfg)
        fp32.train.bf16 = False
        variants.append((FP32, fp32))
    print(f"{describe_cpu()}; training the first-launch settings for {args.minutes:g} min "
          f"(batch {cfg.train.batch_size}, lr {cfg.train.lr:g}, conv1 std {cfg.train.conv1_init_std:g}, device "
          f"{cfg.train.device}, bf16 {cfg.train.bf16})" + "".join(f", then {name}" for name, _ in variants[1:]),
          flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-structure-"))
    outcomes = []
    try:
        for variant, variant_cfg in variants:
            print(f"{variant}:", flush=True)
            outcomes.append(run(variant, variant_cfg, args.minutes, args.sample_seconds, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv([s for o in outcomes for s in o.samples], args.out / f"{NAME}.csv")
    text = summary(outcomes, args.minutes)
    (args.out / f"{NAME}.md").write_text(text, encoding="utf-8")
    drawn = any(o.samples for o in outcomes)
    if drawn:
        title = (f"First-launch demo training on {describe_cpu()}\n"
                 f"device {cfg.train.device}, batch {cfg.train.batch_size}, lr {cfg.train.lr:g}, bf16 {cfg.train.bf16}")
        write_png(outcomes, args.out / f"{NAME}.png", title)
    print(text)
    print(f"Wrote {args.out / NAME}.csv, .md" + (", .png" if drawn else " (no snapshot: no PNG)"))
    return 1 if any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())

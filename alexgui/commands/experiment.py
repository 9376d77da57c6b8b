"""`alexgui experiment NAME`: re-measure one of the paper's claims and write a report.

Each variant x seed is an ordinary run directory under --out (the app can open and overlay them);
the report (report.json, report.md and PNG plots) goes beside them. Re-running the same command skips
finished runs and resumes unfinished ones. See docs/experiments/README.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from alexgui.commands.arguments import data_folder, devices, int_in_range, number_in_range
from alexgui.config import RANGES, Range, min_crop
from alexgui.engine.experiments.definitions import EXPERIMENTS

MAX_SEEDS = 100  # runs per variant; the spread over seeds settles long before
MAX_SMOOTH_STEPS = 100_000  # a running mean over more steps than any run here takes says nothing
CROPS = (min_crop("overlapping"), int(RANGES[("data", "crop")].high))  # the paper's network, as a config.toml allows


def add_parser(sub: argparse._SubParsersAction) -> None:
    names = "\n".join(f"  {e.name:<14} {e.title}" for e in EXPERIMENTS.values())
    p = sub.add_parser(
        "experiment",
        help="re-measure a claim of the paper (relu-vs-tanh, lrn, pooling, augmentation, towers)",
        description="Train the variants of one of the paper's experiments on your data and write a report that "
        "sets the measured effect, its spread over seeds, beside the paper's number.\n\nexperiments:\n" + names,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME", help="one of: " + ", ".join(EXPERIMENTS))
    p.add_argument("--data", default="demo", type=data_folder,
                   help="image folder (class subfolders, optional train/ and val/) or 'demo'")
    p.add_argument("--out", required=True, type=Path, help="folder for the runs and the report (re-use it to resume)")
    p.add_argument("--epochs", type=int, default=30, help="epochs per run (default 30)")
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop each run at this step (0 = no limit); ablations need at least one whole epoch")
    p.add_argument("--seeds", type=int_in_range(1, MAX_SEEDS), default=1,
                   help="runs per variant, seeds 0..K-1 (default 1; 3 to see the spread)")
    p.add_argument("--device", default="cpu", type=devices, help="cpu, cuda, cuda:N, or cuda:0,cuda:1 (one tower on each)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default 128, the paper's)")
    p.add_argument("--lr", type=float, default=0.01, help="initial learning rate (default 0.01, the paper's)")
    p.add_argument("--arch", default="paper", help="network; these experiments need 'paper' (two towers, default)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA, and CPUs with bf16 instructions; fp32 elsewhere)")
    p.add_argument("--crop", type=int_in_range(*CROPS), default=224,
                   help=f"training crop (default 224, the paper's; at least {CROPS[0]}, the smallest "
                   "input the network takes); smaller runs faster, not the paper's input")
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes when the cache is off")
    p.add_argument("--target-error", type=number_in_range(Range(0, 1, open_low=True, open_high=True)), default=None,
                   help="relu-vs-tanh: training top-1 error to reach (default: half of chance error, "
                   "e.g. 0.45 for 10 classes; the paper used 0.25 on CIFAR-10)")
    p.add_argument("--smooth-steps", type=int_in_range(1, MAX_SMOOTH_STEPS), default=20,
                   help="relu-vs-tanh: running-mean window of the training error, in steps (default 20)")


def run(args: argparse.Namespace) -> int:
    from alexgui.commands.progress import TrainPrinter
    from alexgui.config import ConfigError
    from alexgui.engine.events import Failed, Stopped
    from alexgui.engine.experiments import (
        ExperimentError,
        ExperimentOptions,
        ExperimentStopped,
        ReportReady,
        RunBegins,
        RunEnds,
        RunEvent,
        run_experiment,
    )

    try:
        _check_arguments(args)
    except ConfigError as e:  # before any folder is made or image read
        print(f"alexgui experiment: {e}", file=sys.stderr)
        return 2
    data = args.data if args.data == "demo" else str(Path(args.data).expanduser().resolve())
    options = ExperimentOptions(
        data=data,
        epochs=args.epochs,
        max_steps=args.max_steps,
        seeds=args.seeds,
        device=args.device,
        batch_size=args.batch_size,
        lr=args.lr,
        arch=args.arch,
        bf16=args.bf16,
        crop=args.crop,
        resize=max(args.crop, round(args.crop * 256 / 224)),  # the paper's 256:224 margin for random crops
        workers=args.workers,
        target_error=args.target_error,
        smooth_steps=args.smooth_steps,
    )
    out = sys.stdout
    stop_requested = False
    failures = 0
    printer: TrainPrinter | None = None
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: object) -> None:
        if stop.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort at once)", file=out, flush=True)

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        for update in run_experiment(args.name, args.out, options, stop=stop):
            if isinstance(update, RunBegins):
                verb = {"train": "training", "resume": "resuming", "skip": "skipping (finished earlier)"}[update.action]
                print(f"[{update.index + 1}/{update.total}] {update.variant} seed {update.seed}: {verb} {update.path}",
                      file=out, flush=True)  # fmt: skip
                printer = TrainPrinter(out, update.path, max_steps=args.max_steps)
            elif isinstance(update, RunEvent) and printer is not None:
                if isinstance(update.event, Failed):
                    failures += 1
                    printer.note(f"run failed: {update.event.message}")
                elif not isinstance(update.event, Stopped):
                    printer.show(update.event)
            elif isinstance(update, RunEnds) and update.outcome == "stopped" and printer is not None:
                printer.note(f"{update.variant} seed {update.seed}: {update.message}")
            elif isinstance(update, ExperimentStopped):
                stop_requested = True
                print(f"experiment stopped; re-run the same command to resume it ({update.out})", file=out, flush=True)
            elif isinstance(update, ReportReady):
                print("", file=out)
                for line in update.report["summary"]:
                    print(line.replace("**", ""), file=out)
                print(f"\nreport: {update.out / 'report.md'} (and report.json, "
                      f"{len(update.report['plots'])} plot(s))", file=out, flush=True)  # fmt: skip
    except (ExperimentError, ConfigError) as e:
        print(f"alexgui experiment: {e}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, previous)
    if stop_requested:
        return 130
    return 1 if failures else 0


# The flags that are run settings, checked by the same rules as a config.toml's values.
_SETTINGS = [
    ("--epochs", "train", "epochs"),
    ("--max-steps", "train", "max_steps"),
    ("--batch-size", "train", "batch_size"),
    ("--lr", "train", "lr"),
    ("--workers", "data", "workers"),
]


def _check_arguments(args: argparse.Namespace) -> None:
    """ConfigError naming the flag and the accepted values for the first run setting that cannot be used
    (the other flags are checked by their argparse types, commands/arguments.py)."""
    from alexgui.config import check_setting

    for flag, section, name in _SETTINGS:
        check_setting(section, name, getattr(args, flag[2:].replace("-", "_")), f"argument {flag}")

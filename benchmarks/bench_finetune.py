"""Fine-tuning: the training step's speed per mode, and a head fine-tune against training from random weights.

    python -m benchmarks.bench_finetune [--batch 32] [--rounds 5]
    python -m benchmarks.bench_finetune --source RUN|CHECKPOINT|torchvision --data DIR [--minutes M] [--out FOLDER]

1. Speed, side by side in one process, the modes in turn in each round (each round starting with the
   next mode) after a warm-up, medians: one
   training step (forward, backward, SGD update) of a batch of 224x224 inputs for the paper network and
   torchvision's, trained from scratch (every layer) and fine-tuned with "head", "fc" and "all" (built by
   the trainer's own trainable(), so the frozen layers are exactly the ones a run freezes); and the head
   fine-tune's fast path (head_features.py): the features' forward pass, once per view, and fc8's step.
2. Accuracy, with --source and --data: `alexgui train --init SOURCE --finetune head` on DIR for --minutes,
   then training DIR from random weights (the quick preset) for the same wall-clock time, each stopped by
   the clock like a user pressing Stop; their best validation top-1 error side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from alexgui.config import RunConfig
from alexgui.engine.model.networks import build_model
from alexgui.engine.training.distributed import SINGLE_PROCESS
from alexgui.engine.training.init_source import InitSource, trainable_parameters
from alexgui.engine.training.setup import trainable
from benchmarks.machine import describe_cpu

MODES = ("scratch", "head", "fc", "all")


def fake_source(arch: str) -> InitSource:
    """A source of the architecture's shapes (the speed does not depend on the weights' values)."""
    from alexgui.config import ModelConfig
    from alexgui.engine.data.transforms import Preprocess

    model = build_model(ModelConfig(arch=arch, num_classes=1000))  # type: ignore[arg-type]
    return InitSource("bench", Path("bench"), ModelConfig(arch=arch, num_classes=1000),  # type: ignore[arg-type]
                      model.state_dict(), [f"c{i}" for i in range(1000)], Preprocess.imagenet_mean_std(), "bench")


def step_fn(arch: str, mode: str, batch: int) -> tuple[object, int]:
    cfg = RunConfig()
    cfg.model.arch = arch  # type: ignore[assignment]
    cfg.model.num_classes = 10
    cfg.train.device = "cpu"
    # A rate small enough that no mode's weights run off on random data while they are timed: at the paper's
    # 0.01 the scratch network's weights diverge within a few steps, and arithmetic on what they become
    # (denormal floats) is slower, which would be timed as the mode's cost.
    cfg.train.lr = 1e-5
    source = None
    if mode != "scratch":
        cfg.train.init, cfg.train.finetune = "bench", mode  # type: ignore[assignment]
        source = fake_source(arch)
    model, step_model, _, optimizer, _ = trainable(cfg, None, [torch.device("cpu")], SINGLE_PROCESS, source,
                                                   [f"n{i}" for i in range(10)])
    model.train()
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(step_model(x), y).backward()
        optimizer.step()

    return step, trainable_parameters(model)[0]


def speed(batch: int, rounds: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for arch in ("paper", "torchvision"):
        jobs = {mode: step_fn(arch, mode, batch) for mode in MODES}
        for job, _ in jobs.values():
            job()  # type: ignore[operator]
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(rounds):
            for mode in MODES[r % len(MODES):] + MODES[: r % len(MODES)]:  # each round starts with another mode
                job = jobs[mode][0]
                t = time.perf_counter()
                job()  # type: ignore[operator]
                times[mode].append(time.perf_counter() - t)
        out[arch] = {}
        base = statistics.median(times["scratch"])
        fast = cached_head_speed(arch, batch, rounds)
        print(f"\n{arch}: images/s of one training step, batch {batch}, median of {rounds}")
        for mode in MODES:
            t = statistics.median(times[mode])
            out[arch][mode] = batch / t
            print(f"  {mode:8s} {batch / t:7.1f} images/s  {base / t:5.2f}x scratch  ({jobs[mode][1]:,} parameters learn)")
        out[arch].update(fast)
        print(f"  head with cached fc7 features: computing them {fast['features']:.1f} views/s once; then fc8's step "
              f"{fast['cached_step']:.0f} images/s ({fast['cached_step'] * base / batch:.0f}x scratch)")
    return out


def cached_head_speed(arch: str, batch: int, rounds: int) -> dict[str, float]:
    """The fast path's two parts (head_features.py): the frozen network's forward pass that computes the
    features (once per view), and fc8's training step on a batch of cached features."""
    from alexgui.engine.training.head_features import head_step

    cfg = RunConfig()
    cfg.model.arch, cfg.model.num_classes = arch, 10  # type: ignore[assignment]
    cfg.train.init, cfg.train.finetune, cfg.train.lr = "bench", "head", 1e-5  # type: ignore[assignment]
    model, _, _, optimizer, _ = trainable(cfg, None, [torch.device("cpu")], SINGLE_PROCESS, fake_source(arch),
                                          [f"n{i}" for i in range(10)])
    x = torch.randn(batch, 3, 224, 224)
    feats = torch.randn(batch, 4096).relu()
    y = torch.randint(0, 10, (batch,))

    def forward() -> None:
        with torch.inference_mode():
            model.eval()
            model.forward_features(x)
        model.train()

    def step() -> None:
        head_step(model, optimizer, feats, y)

    timings = {}
    for name, fn, repeat in (("features", forward, 1), ("cached_step", step, 50)):
        fn()
        ts = []
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(repeat):
                fn()
            ts.append((time.perf_counter() - t) / repeat)
        timings[name] = batch / statistics.median(ts)
    return timings


def timed_run(args: list[str], minutes: float) -> tuple[float, float | None]:
    """`alexgui train ARGS` stopped after `minutes` (SIGINT, as Ctrl-C); (seconds, best val top-1 error)."""
    import signal

    from alexgui.engine.events import EpochDone
    from alexgui.engine.store.metrics_log import read_events

    out = Path(args[args.index("--out") + 1])
    t = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "alexgui", "train", *args], stdout=subprocess.DEVNULL)
    try:
        proc.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        proc.wait()
    seconds = time.monotonic() - t
    events, _ = read_events(out / "metrics.jsonl")
    errors = [e.val_top1_err for e in events if isinstance(e, EpochDone) and e.val_top1_err is not None]
    return seconds, min(errors) if errors else None


def accuracy(source: str, data: str, minutes: float, folder: Path) -> dict[str, object]:
    common = ["--data", data, "--device", "cpu", "--batch-size", "32", "--epochs", "100"]
    head_s, head_err = timed_run([*common, "--out", str(folder / "head"), "--init", source, "--finetune", "head",
                                  "--lr", "0.001"], minutes)
    scratch_s, scratch_err = timed_run([*common, "--out", str(folder / "scratch"), "--preset", "quick",
                                        "--epochs", "100"], head_s / 60)
    print(f"\n{data}, {minutes:g} minutes each: best val top-1 error")
    print(f"  head fine-tune from {source}: {head_err}  ({head_s:.0f} s)")
    print(f"  random weights (quick preset): {scratch_err}  ({scratch_s:.0f} s)")
    return {"head": {"seconds": head_s, "best_val_top1_err": head_err},
            "scratch": {"seconds": scratch_s, "best_val_top1_err": scratch_err}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--source", help="a run, a checkpoint, or torchvision (ImageNet weights in the hub cache) "
                    "to fine-tune from (with --data)")
    ap.add_argument("--data", help="the dataset to fine-tune on and to train from scratch")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--out", type=Path, help="where the two runs go (default: a temporary folder)")
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()
    print(describe_cpu())
    report: dict[str, object] = {}
    if not args.no_speed:
        report["speed"] = speed(args.batch, args.rounds)
    if args.source and args.data:
        folder = args.out or Path(tempfile.mkdtemp(prefix="bench-finetune-"))
        report["accuracy"] = accuracy(args.source, args.data, args.minutes, folder)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

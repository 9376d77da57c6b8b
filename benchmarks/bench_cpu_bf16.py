"""bf16 autocast against fp32 for CPU training, side by side in one run (issue 13, item 5).

1. Speed: the paper net's training step as the loop takes it (autocast forward, cross entropy,
   backward, SGD with momentum and weight decay) on synthetic mean-free pixels, fp32 and bf16
   alternated A B A B after a warm-up step each; medians of per-step times, images/s and their ratio.
2. Curves: the engine's own runs (engine.training.loop.train, the demo preset's recipe) for each seed in
   fp32 and in bf16, stopped after the same number of steps; the final weights of each judged the same
   way (fp32, centre crop) on the validation set: top-1 error and loss, mean and spread over the seeds
   against the spread between seeds. On the built-in demo data, and on ../shared/data/imagenette-224-mini
   when present.

The app would turn bf16 on by default for CPU training only where (1) is faster and (2) matches fp32
within seed-to-seed noise. On a CPU without bf16 instructions the engine trains in fp32 whatever
--bf16 says (engine/training/precision.py); --emulate measures emulated bf16 there anyway (slow: 3.4x
slower than fp32 on this project's AVX2 CI CPU), to check this script or the numerics.

Usage: python -m benchmarks.bench_cpu_bf16 [--batch-size 32] [--crop 224] [--rounds 3] [--steps 4]
           [--seeds 3] [--train-steps 60] [--data demo,imagenette] [--val-images 0] [--emulate]
The defaults take about 20 minutes on a 2-core CPU. A check that it runs (a minute or two; 2.5 minutes on a busy 2-core CPU):
    python -m benchmarks.bench_cpu_bf16 --batch-size 4 --crop 63 --rounds 1 --steps 1 --seeds 1 \\
        --train-steps 2 --data demo --val-images 16 --emulate
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alexgui.engine.training.memory import reusing_freed_memory, share_one_heap

share_one_heap()  # as `alexgui` does at start, before torch starts a thread

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from alexgui.config import ModelConfig, RunConfig  # noqa: E402
from alexgui.engine.data.dataset import ImageSet, prepare_dataset  # noqa: E402
from alexgui.engine.data.transforms import Preprocess  # noqa: E402
from alexgui.engine.model.networks import build_model  # noqa: E402
from alexgui.engine.store.checkpoint import load_checkpoint  # noqa: E402
from alexgui.engine.store.rundir import RunDir  # noqa: E402
from alexgui.engine.training import precision  # noqa: E402
from alexgui.engine.training.checkpoints import load_weights  # noqa: E402
from alexgui.engine.training.evaluation import evaluate  # noqa: E402
from alexgui.engine.training.loop import train  # noqa: E402
from alexgui.paths import cache_dir  # noqa: E402
from alexgui.presets import preset_named  # noqa: E402
from benchmarks.machine import describe_cpu  # noqa: E402

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-224-mini"
CPU = torch.device("cpu")


@contextmanager
def bf16_allowed(emulate: bool) -> Iterator[None]:
    """The engine's probe answering yes for the length of the block when emulating (else as it is)."""
    probe = precision.cpu_has_bf16
    if emulate:
        precision.cpu_has_bf16 = lambda: True  # type: ignore[assignment]
    try:
        yield
    finally:
        precision.cpu_has_bf16 = probe  # type: ignore[assignment]


def step_times(bf16: bool, batch: int, crop: int, steps: int) -> list[float]:
    """Seconds per training step of a fresh paper net (its first step is warm-up, not counted)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=10)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, crop, crop, generator=torch.Generator().manual_seed(1)) * 50
    labels = torch.arange(batch) % 10
    times = []
    with reusing_freed_memory():  # the engine's malloc setting for CPU steps
        for i in range(steps + 1):
            start = time.perf_counter()
            with precision.autocast(CPU, bf16):
                loss = F.cross_entropy(model(x).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()
            if i > 0:
                times.append(time.perf_counter() - start)
    return times


def run_config(data: str, seed: int, bf16: bool, batch: int, train_steps: int) -> RunConfig:
    cfg = RunConfig()
    preset = preset_named("demo")
    if preset is not None:  # the app's demo recipe (batch and learning rate), as a first-time user trains
        preset.apply(cfg)
    cfg.data.data = data
    cfg.data.workers = 0
    cfg.train.device = "cpu"
    cfg.train.batch_size = batch
    cfg.train.seed = seed
    cfg.train.bf16 = bf16
    cfg.train.epochs = 1_000_000  # stopped by max_steps, so both precisions take the same steps
    cfg.train.max_steps = train_steps
    cfg.train.checkpoint_minutes = 0
    cfg.train.log_every = 1_000_000
    return cfg


def val_subset(images: ImageSet, limit: int) -> ImageSet:
    """The first `limit` validation images in a fixed shuffled order (all of them for 0)."""
    if limit <= 0 or limit >= len(images):
        return images
    chosen = np.sort(np.random.default_rng(0).permutation(len(images))[:limit])
    return ImageSet([images.paths[i] for i in chosen], images.labels[chosen], images.size, images.cache, images.rows[chosen])


def trained_error(cfg: RunConfig, workdir: Path, val: ImageSet) -> tuple[float, float, float]:
    """(val top-1 error, val loss, seconds of training) of one engine run, judged in fp32."""
    run = RunDir.create(Path(tempfile.mkdtemp(dir=workdir)) / "run", cfg)
    start = time.perf_counter()
    for event in train(cfg, run):
        if event.type == "failed":
            raise SystemExit(f"engine run failed: {getattr(event, 'message', event)}")
    seconds = time.perf_counter() - start
    checkpoint = load_checkpoint(run.last_checkpoint)
    saved = RunConfig.from_toml(checkpoint.meta["config"])
    model = build_model(saved.model)
    load_weights(checkpoint, model)
    preprocess = Preprocess.from_description(checkpoint.meta["preprocessing"], checkpoint.tensors)
    loss, top1_err, _ = evaluate(model, preprocess, val, cfg.train.batch_size, CPU, bf16=False)
    return top1_err, loss, seconds


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--crop", type=int, default=224, help="input side of the speed measurement")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds of the speed measurement")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per segment")
    parser.add_argument("--seeds", type=int, default=3, help="engine runs per precision and dataset")
    parser.add_argument("--train-steps", type=int, default=60, help="steps of each engine run")
    parser.add_argument("--data", default="demo,imagenette", help="demo and/or imagenette (when present)")
    parser.add_argument("--val-images", type=int, default=0, help="judge on this many validation images (0 = all)")
    parser.add_argument("--emulate", action="store_true", help="measure bf16 on a CPU without its instructions")
    args = parser.parse_args()

    native = precision.cpu_has_bf16()
    print(f"machine: {describe_cpu()}")
    print(f"bf16 instructions: {'yes' if native else 'no'} (torch.cpu.get_capabilities)")
    if not native and not args.emulate:
        print(
            "This CPU has no bf16 instructions: the engine trains in fp32 whatever --bf16 says, so there is "
            "nothing to compare. --emulate measures emulated bf16 anyway."
        )
        return
    kind = "native" if native else "EMULATED (no bf16 instructions: not what the engine would do)"

    with bf16_allowed(args.emulate and not native):
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for bf16 in (False, True):
                times[bf16] += step_times(bf16, args.batch_size, args.crop, args.steps)
        ips = {bf16: args.batch_size / statistics.median(t) for bf16, t in times.items()}
        print()
        print(
            f"paper net training step, batch {args.batch_size}, {args.crop}x{args.crop}, "
            f"{torch.get_num_threads()} threads; bf16 {kind}"
        )
        print()
        print("| precision | images/s (median of steps, alternated) | ratio to fp32 |")
        print("| --- | --- | --- |")
        print(f"| fp32 | {ips[False]:.1f} | 1.00 |")
        print(f"| bf16 autocast | {ips[True]:.1f} | {ips[True] / ips[False]:.2f} |")

        sets = [("demo", "built-in demo set")]
        if "imagenette" in args.data and REAL_DATA.is_dir():
            sets.append((str(REAL_DATA), "imagenette-224-mini"))
        if "demo" not in args.data:
            sets = sets[1:]
        seeds = list(range(args.seeds))
        with tempfile.TemporaryDirectory() as tmp:
            for data, name in sets:
                val = val_subset(prepare_dataset(run_config(data, 0, False, 1, 1).data, cache_dir()).val, args.val_images)
                results: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
                for seed in seeds:
                    for bf16 in (False, True):
                        cfg = run_config(data, seed, bf16, args.batch_size, args.train_steps)
                        results[bf16].append(trained_error(cfg, Path(tmp), val))
                print()
                print(
                    f"{name}: {args.train_steps} steps at batch {args.batch_size}, seeds {seeds}, the demo "
                    f"preset's recipe; judged in fp32 on {len(val)} validation images"
                )
                print()
                print("| precision | val top-1 error per seed | mean ± sd | val loss mean ± sd | s per run (with its set-up) |")
                print("| --- | --- | --- | --- | --- |")
                for bf16, label in ((False, "fp32"), (True, "bf16 autocast")):
                    errs = [r[0] for r in results[bf16]]
                    losses = [r[1] for r in results[bf16]]
                    secs = statistics.fmean(r[2] for r in results[bf16])
                    print(f"| {label} | {', '.join(f'{e:.3f}' for e in errs)} | {spread(errs)} | {spread(losses)} | {secs:.0f} |")
                diffs = [b[0] - a[0] for a, b in zip(results[False], results[True])]
                print(f"\nbf16 - fp32 top-1 error, same seed: {', '.join(f'{d:+.3f}' for d in diffs)}")


if __name__ == "__main__":
    main()

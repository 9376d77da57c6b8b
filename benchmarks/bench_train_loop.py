"""Engine overhead and the decoded-image cache, measured side by side in one process.

1. Training images/s of alexgui's loop (engine.training.loop.train: events, metrics log, augmentation, checkpoint
   bookkeeping) against a minimal plain PyTorch loop on the same model, batch, device and cached
   images, alternated A B A B after a warm-up; medians of per-step times. Goal: ratio >= 0.95.
2. Epoch time reading the decoded uint8 cache against decoding the image files every epoch.

Data: ../shared/data/imagenette-224-mini when present (real JPEGs), else the built-in demo set.
Usage: python -m benchmarks.bench_train_loop [--device cpu] [--batch-size 32] [--steps 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from alexgui.engine.training.memory import reusing_freed_memory, share_one_heap

share_one_heap()  # as `alexgui` does at start, before torch starts a thread

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from alexgui.config import RunConfig  # noqa: E402
from alexgui.engine.data.dataset import prepare_dataset  # noqa: E402
from alexgui.engine.events import StepDone  # noqa: E402
from alexgui.engine.model.networks import build_model  # noqa: E402
from alexgui.engine.store.rundir import RunDir  # noqa: E402
from alexgui.engine.training.loop import train  # noqa: E402
from alexgui.paths import cache_dir  # noqa: E402
from benchmarks.machine import describe_cpu  # noqa: E402

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-224-mini"


def engine_step_times(cfg: RunConfig, steps: int, workdir: Path) -> list[float]:
    """Seconds per step of engine.training.loop.train, measured from its own events (the first step is warm-up)."""
    cfg = RunConfig.from_dict(cfg.to_dict())
    cfg.train.max_steps = steps + 1
    run = RunDir.create(Path(tempfile.mkdtemp(dir=workdir)) / "run", cfg)
    times = []
    for event in train(cfg, run):
        if isinstance(event, StepDone) and event.step > 1:
            times.append(cfg.train.batch_size / event.images_per_s)
        if event.type == "failed":
            raise SystemExit(f"engine run failed: {event.message}")
    return times


def plain_step_times(cfg: RunConfig, steps: int) -> list[float]:
    """The loop a person writes by hand: cached uint8 -> float, centre crop, mean, SGD step."""
    data = prepare_dataset(cfg.data, cache_dir())
    device = torch.device(cfg.train.device)
    cfg.model.num_classes = len(data.class_names)
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.train.lr, momentum=0.9, weight_decay=5e-4)
    order = np.random.default_rng(0).permutation(len(data.train))
    off = (256 - 224) // 2
    times = []
    batches = data.train.batches(order, cfg.train.batch_size, workers=0)
    with reusing_freed_memory():  # the engine's malloc setting too: this compares the loops alone
        for i, (u8, labels) in zip(range(steps + 1), batches):
            start = time.perf_counter()
            x = u8.to(device)[:, off : off + 224, off : off + 224].permute(0, 3, 1, 2).float() - 120.0
            loss = F.cross_entropy(model(x), labels.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            if i > 0:
                times.append(time.perf_counter() - start)
    return times


def epoch_seconds(cfg: RunConfig, cached: bool) -> float:
    """One pass of reading every training image as uint8 batches (what an epoch's input costs)."""
    cfg = RunConfig.from_dict(cfg.to_dict())
    cfg.data.cache = cached
    data = prepare_dataset(cfg.data, cache_dir())
    start = time.perf_counter()
    for _ in data.train.batches(np.arange(len(data.train)), cfg.train.batch_size, workers=cfg.data.workers):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per segment")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    cfg = RunConfig()
    cfg.data.data = str(REAL_DATA) if REAL_DATA.is_dir() else "demo"
    cfg.data.workers = args.workers
    cfg.train.device = args.device
    cfg.train.batch_size = args.batch_size
    cfg.train.checkpoint_minutes = 0
    prepare_dataset(cfg.data, cache_dir())  # build the cache outside the timings

    engine_times: list[float] = []
    plain_times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            engine_times += engine_step_times(cfg, args.steps, Path(tmp))
            plain_times += plain_step_times(cfg, args.steps)
    engine_ips = args.batch_size / statistics.median(engine_times)
    plain_ips = args.batch_size / statistics.median(plain_times)

    cached, uncached = [], []
    for _ in range(2):
        cached.append(epoch_seconds(cfg, cached=True))
        uncached.append(epoch_seconds(cfg, cached=False))
    data_name = "imagenette-224-mini (real JPEGs)" if cfg.data.data != "demo" else "built-in demo set"

    print(f"machine: {describe_cpu()}")
    print(f"data: {data_name}; device {args.device}; batch {args.batch_size}; paper model, fp32")
    print()
    print("| measurement | alexgui | plain PyTorch | ratio |")
    print("| --- | --- | --- | --- |")
    print(
        f"| training images/s (median of {len(engine_times)} steps each, alternated) | {engine_ips:.1f} | "
        f"{plain_ips:.1f} | {engine_ips / plain_ips:.3f} |"
    )
    c, u = statistics.median(cached), statistics.median(uncached)
    print()
    print("| input for one epoch of training images | seconds | ratio to decoding |")
    print("| --- | --- | --- |")
    print(f"| decoding the files ({args.workers} workers) | {u:.2f} | 1.00 |")
    print(f"| reading the decoded uint8 cache | {c:.2f} | {c / u:.3f} |")


if __name__ == "__main__":
    main()

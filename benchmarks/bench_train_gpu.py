"""Training throughput of the paper model against a plain torchvision AlexNet loop, side by side.

Measured in one process, alternated A B A B after a warm-up, medians over rounds:

1. synthetic  inputs already on the device (no input pipeline): alexgui's paper model (two towers,
              LRN, on one device or one tower per device) against torchvision.models.alexnet in the
              plainest loop (same precision, memory format, batch, optimizer); ratio paper / torchvision.
2. real data  engine.training.loop.train on real JPEGs (../shared/data/imagenette-224-mini through the decoded-image
              cache, pinned memory, non_blocking copies, augmentation on the device): ratio of its
              images/s to the paper model's synthetic images/s, i.e. how well the pipeline keeps the
              device fed (goal on a GPU: >= 0.8).

Model FLOP utilisation (MFU) = images/s x training FLOP per image / the device's peak. Training FLOP
per image = 3 x forward FLOP (backward ~ 2 x forward), forward FLOP = 2 x the multiply-adds of every
conv and linear layer, counted with hooks on a real forward pass at 224x224: the paper model is
~0.72 G multiply-adds, so ~4.3 GFLOP per training image. Peak is looked up for known GPUs (dense
bf16/fp32 tensor-core figures) or given with --peak-tflops; otherwise MFU is "n/a".

Usage:
    python -m benchmarks.bench_train_gpu                          # CUDA if present: bf16, channels_last, batch 256
    python -m benchmarks.bench_train_gpu --device cpu             # small CPU check: fp32, batch 8, few steps
    python -m benchmarks.bench_train_gpu --device cuda:0,cuda:1   # the paper's placement, a tower per GPU
    options: --batch-size N --steps N --rounds N --precision bf16|fp32 --compile --no-real-data
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from alexgui.config import RunConfig
from alexgui.engine.devices import describe_devices, parse_devices
from alexgui.engine.events import StepDone
from alexgui.engine.model.paper import PaperAlexNet
from alexgui.engine.model.placement import place_model
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.loop import train
from benchmarks.machine import describe_cpu

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-224-mini"
NUM_CLASSES = 1000

# Dense (no sparsity) peak TFLOP/s by GPU name, as the vendors publish them (SXM parts).
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "H100": {"bf16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp32": 19.5},
}


def forward_flop(model: nn.Module, device: torch.device, size: int = 224) -> float:
    """2 x multiply-adds of every Conv2d and Linear for one size x size image (224: the paper's)."""
    macs = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train()
    return 2.0 * macs


def synchronize(devices: list[torch.device]) -> None:
    for d in devices:
        if d.type == "cuda":
            torch.cuda.synchronize(d)


def make_step(model: nn.Module, device: torch.device, bf16: bool) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The plainest training step: forward under autocast, cross entropy, backward, SGD."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def images_per_s(step: Callable, x: torch.Tensor, y: torch.Tensor, steps: int, devices: list[torch.device]) -> float:
    synchronize(devices)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    synchronize(devices)
    return steps * x.shape[0] / (time.perf_counter() - start)


def real_data_images_per_s(args: argparse.Namespace, workdir: Path) -> float:
    """engine.training.loop.train on the real JPEGs; median images/s of its steps after the warm-up ones."""
    cfg = RunConfig()
    cfg.data.data = str(REAL_DATA)
    cfg.data.workers = 0
    cfg.train.device = args.device
    cfg.train.batch_size = args.batch_size
    cfg.train.bf16 = args.precision == "bf16"
    cfg.train.channels_last = args.channels_last
    cfg.train.compile = args.compile
    cfg.train.checkpoint_minutes = 0
    cfg.train.max_steps = args.warmup + args.steps * args.rounds
    run = RunDir.create(workdir / "real", cfg)
    rates = []
    for event in train(cfg, run):
        if isinstance(event, StepDone) and event.step > args.warmup:
            rates.append(event.images_per_s)
        if event.type == "failed":
            raise SystemExit(f"engine run failed: {event.message}")  # type: ignore[attr-defined]
    return statistics.median(rates)


def machine(devices: list[torch.device]) -> str:
    if devices[0].type == "cuda":
        names = ", ".join(f"{d}: {torch.cuda.get_device_name(d)}" for d in dict.fromkeys(devices))
        return f"{names}; torch {torch.__version__}, CUDA {torch.version.cuda}"
    return describe_cpu()


def peak_tflops(args: argparse.Namespace, devices: list[torch.device]) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if devices[0].type != "cuda":
        return None
    name = torch.cuda.get_device_name(devices[0])
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[args.precision] * len(set(devices))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 on CUDA, 8 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per segment (default 20 CUDA, 2 CPU)")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 CUDA, 1 CPU)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None, help="default bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--no-real-data", dest="real_data", action="store_false")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for MFU")
    args = parser.parse_args()

    devices = parse_devices(args.device)
    cuda = devices[0].type == "cuda"
    args.batch_size = args.batch_size or (256 if cuda else 8)
    args.steps = args.steps or (20 if cuda else 2)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    args.precision = args.precision or ("bf16" if cuda else "fp32")
    args.channels_last = cuda if args.channels_last is None else args.channels_last and cuda
    bf16 = args.precision == "bf16" and cuda
    if cuda:
        torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    torch.manual_seed(0)
    paper = place_model(PaperAlexNet(num_classes=NUM_CLASSES), devices).to(memory_format=memory_format)
    plain = torchvision.models.alexnet(num_classes=NUM_CLASSES).to(devices[0], memory_format=memory_format)
    flop = {"paper": 3 * forward_flop(paper, devices[0]), "torchvision": 3 * forward_flop(plain, devices[0])}
    if args.compile:
        paper.compile()
        plain.compile()

    x = torch.randn(args.batch_size, 3, 224, 224, device=devices[0]).contiguous(memory_format=memory_format)
    y = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=devices[0])
    steps = {"paper": make_step(paper, devices[0], bf16), "torchvision": make_step(plain, devices[0], bf16)}
    for step in steps.values():  # warm-up: cuDNN autotuning, compilation, allocator
        images_per_s(step, x, y, args.warmup, devices)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(images_per_s(step, x, y, args.steps, devices))
    synthetic = {name: statistics.median(r) for name, r in rates.items()}
    del x, y, steps, paper, plain

    real = None
    if args.real_data and REAL_DATA.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            real = real_data_images_per_s(args, Path(tmp))

    peak = peak_tflops(args, devices)

    def mfu(name: str, ips: float) -> str:
        return f"{ips * flop[name] / (peak * 1e12):.1%}" if peak else "n/a"

    print(f"machine: {machine(devices)}")
    print(
        f"placement {describe_devices(devices)}; precision {args.precision}; batch {args.batch_size}; "
        f"channels_last {args.channels_last}; compile {args.compile}; {args.rounds} rounds x {args.steps} steps "
        f"after {args.warmup} warm-up; peak {f'{peak:.0f} TFLOP/s' if peak else 'unknown'}"
    )
    print(f"training FLOP per image (3 x forward): paper {flop['paper'] / 1e9:.2f} G, "
          f"torchvision {flop['torchvision'] / 1e9:.2f} G")  # fmt: skip
    print()
    print("| workload | model | images/s | ratio | MFU |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| synthetic, on the device | torchvision AlexNet, plain loop | {synthetic['torchvision']:.1f} | 1.000 | "
          f"{mfu('torchvision', synthetic['torchvision'])} |")  # fmt: skip
    print(f"| synthetic, on the device | paper (alexgui) | {synthetic['paper']:.1f} | "
          f"{synthetic['paper'] / synthetic['torchvision']:.3f} (vs torchvision) | "
          f"{mfu('paper', synthetic['paper'])} |")  # fmt: skip
    if real is not None:
        print(f"| real JPEGs via cache, engine.training.loop.train | paper (alexgui) | {real:.1f} | "
              f"{real / synthetic['paper']:.3f} (vs paper synthetic) | {mfu('paper', real)} |")  # fmt: skip
    else:
        print(f"| real JPEGs | skipped ({REAL_DATA} absent or --no-real-data) | | | |")


if __name__ == "__main__":
    main()

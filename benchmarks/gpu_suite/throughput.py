"""Section: training throughput of the paper net against a plain torchvision AlexNet loop.

Inputs live on the device (no input pipeline), so this is the model and the optimizer alone. For each
variant (fp32; bf16 autocast; + channels_last; + torch.compile) and batch size, both models take the
same plainest step (autocast forward, cross entropy, backward, SGD with momentum and weight decay) on
the same batch, timed in alternating segments (A B, B A, ...) after a warm-up; medians of the rounds.
The variants build on each other in that order, so the models are converted once (channels_last) and
compiled once, and the compiled variant runs last.

MFU = images/s x training FLOP per image (3 x forward, counted with hooks on a real forward pass:
~4.35 GFLOP for the paper net at 224) / the datasheet's dense peak for the precision (H200: bf16 989,
fp32 67 TFLOP/s; PyTorch runs fp32 convolutions as TF32 by default, so fp32 MFU can pass 100%). The
section also measures a large matrix product as the ceiling this card actually reaches.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torchvision
from torch import nn

from alexgui.engine.model.paper import PaperAlexNet
from benchmarks.bench_train_gpu import forward_flop, make_step
from benchmarks.gpu_suite.context import SectionContext
from benchmarks.gpu_suite.timing import (
    TRAIN_FLOP_FACTOR,
    interleaved,
    matmul_tflops,
    mfu,
    peak_tflops,
    seconds,
    steps_for,
)

NAME = "throughput"
TITLE = "Training throughput on synthetic data on the device: paper net vs plain torchvision loop"
WEIGHT = 0.25
COLUMNS = [
    ("variant", "variant", "text"), ("precision", "precision", "text"), ("batch", "batch", "int"),
    ("paper_images_per_s", "paper img/s", "rate"), ("torchvision_images_per_s", "torchvision img/s", "rate"),
    ("ratio", "paper / torchvision", "ratio"), ("paper_mfu", "paper MFU", "pct"),
    ("torchvision_mfu", "torchvision MFU", "pct"), ("paper_step_ms", "paper ms/step", "ms"),
    ("timed", "timed", "text"), ("first_step_s", "first step s (compile)", "num"),
]  # fmt: skip


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str  # "fp32" or "bf16" (autocast)
    channels_last: bool
    compiled: bool


VARIANTS = (
    Variant("fp32", "fp32", False, False),
    Variant("bf16 autocast", "bf16", False, False),
    Variant("bf16 + channels_last", "bf16", True, False),
    Variant("bf16 + channels_last + torch.compile", "bf16", True, True),
)


def run(ctx: SectionContext) -> None:
    sizes, device = ctx.sizes, ctx.device
    if ctx.cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its algorithms once
    ceiling(ctx)
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {
        "paper": PaperAlexNet(num_classes=sizes.classes).to(device),
        "torchvision": torchvision.models.alexnet(weights=None, num_classes=sizes.classes).to(device),
    }
    flop = {name: TRAIN_FLOP_FACTOR * forward_flop(m, device, sizes.crop) for name, m in models.items()}
    ctx.record["figures"].update(
        training_gflop_per_image={name: round(f / 1e9, 3) for name, f in flop.items()}, crop=sizes.crop,
        tf32={"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        peak_tflops={p: peak_tflops(device, p) for p in ("bf16", "fp32")},
    )  # fmt: skip
    combos = [(v, b) for v in VARIANTS for b in sizes.train_batches]
    compiled = False
    compile_s = sizes.compile_estimate_s  # both models, one batch size; measured after the first
    for i, (variant, batch) in enumerate(combos):
        ctx.check_time(f"{variant.name} at batch {batch}")
        if variant.compiled and ctx.time_left() < compile_s:
            # Each batch size compiles again (the first re-compile makes the batch dimension dynamic).
            ctx.note(f"{variant.name} at batch {batch} skipped: {ctx.time_left():.0f} s left, compiling "
                     f"both models takes ~{compile_s:.0f} s")  # fmt: skip
            continue
        if variant.compiled and not compiled:
            for m in models.values():
                m.compile(backend=sizes.compile_backend)  # in place; the first step pays for it
            compiled = True
        if variant.channels_last:
            for m in models.values():
                m.to(memory_format=torch.channels_last)
        per_combo = max(ctx.time_left(), 0.0) / (len(combos) - i)
        row = measure(ctx, models, flop, variant, batch, per_combo)
        if variant.compiled:
            compile_s = float(row["first_step_s"]) + float(row["torchvision_first_step_s"])  # type: ignore[arg-type]
        gc.collect()
        if ctx.cuda:
            torch.cuda.empty_cache()
    ctx.ran(f"{len(ctx.record['rows'])} of {len(combos)} variant x batch combinations, crop {sizes.crop}, "
            f"{sizes.classes} classes; each: {sizes.warmup} warm-up steps per model, then {sizes.rounds} "
            f"alternating rounds of timed segments (steps per segment sized to the budget); "
            f"torch.compile backend {sizes.compile_backend!r}")  # fmt: skip


def ceiling(ctx: SectionContext) -> None:
    """A large bf16 matrix product (fp32 on the CPU dry run): the rate this device really reaches."""
    if ctx.cuda:
        n, dtype, label = 8192, torch.bfloat16, "bf16 8192^3"
        rate = matmul_tflops(ctx.device, n, dtype, repeat=10)
    else:
        n, dtype, label = 256, torch.float32, "fp32 256^3"
        rate = matmul_tflops(ctx.device, n, dtype, repeat=2)
    ctx.record["figures"]["matmul_ceiling_tflops"] = {"what": label, "tflops": float(f"{rate:.4g}")}
    ctx.save()


def measure(ctx: SectionContext, models: dict[str, nn.Module], flop: dict[str, float], variant: Variant,
            batch: int, budget_s: float) -> dict[str, object]:
    sizes, device = ctx.sizes, ctx.device
    precision, bf16 = ctx.precision(variant.precision)
    fmt = torch.channels_last if variant.channels_last else torch.contiguous_format
    x = torch.randn(batch, 3, sizes.crop, sizes.crop, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, sizes.classes, (batch,), device=device)
    steps = {name: make_step(m, device, bf16) for name, m in models.items()}
    # The first step of each model pays for cuDNN autotuning, and for compilation when compiled.
    first = {name: seconds(partial(step, x, y), device) for name, step in steps.items()}
    for step in steps.values():
        for _ in range(sizes.warmup - 1):
            step(x, y)
    if sizes.min_steps < sizes.max_steps:
        # Rounds x both models x segment, with room for the warm-up just spent: segments sized to fit.
        one = max(seconds(partial(step, x, y), device) for step in steps.values())
        target = min(sizes.segment_s, budget_s / (sizes.rounds * len(steps) * 1.5))
        n = steps_for(one, target, sizes.min_steps, sizes.max_steps)
    else:
        n = sizes.min_steps

    def segment(step: Callable[[torch.Tensor, torch.Tensor], None]) -> Callable[[], None]:
        def run_n() -> None:
            for _ in range(n):
                step(x, y)

        return run_n

    medians = interleaved({name: segment(step) for name, step in steps.items()}, sizes.rounds, device, warmup=0)
    ips = {name: n * batch / t for name, t in medians.items()}
    peak = peak_tflops(device, "bf16" if bf16 else "fp32")
    return ctx.row(
        precision, batch, variant=variant.name,
        paper_images_per_s=ips["paper"], torchvision_images_per_s=ips["torchvision"],
        ratio=ips["paper"] / ips["torchvision"],
        paper_mfu=mfu(ips["paper"], flop["paper"], peak), torchvision_mfu=mfu(ips["torchvision"], flop["torchvision"], peak),
        paper_step_ms=1e3 * medians["paper"] / n, timed=f"{sizes.rounds} x {n} steps",
        first_step_s=first["paper"] if variant.compiled else None,
        channels_last=variant.channels_last, compiled=variant.compiled,
        torchvision_first_step_s=first["torchvision"] if variant.compiled else None,
    )  # fmt: skip

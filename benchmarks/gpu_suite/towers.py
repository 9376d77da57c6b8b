"""Section: the paper's two-tower split on one GPU ("cuda:0,cuda:0"): the same numbers, and at what cost.

Equality: the same weights, input and dropout draws through the single-device model and through
place_model(..., [dev, dev]) (each tower its own placed stages, every cross-tower input copied as on two
GPUs); logits and every parameter's gradient compared with tests/test_placement.py's tolerances, in
fp32 with deterministic cuDNN algorithms and TF32 off, so that a difference is the placement's and not
the kernels'. Speed: both models trained side by side (A B A B), the split one's per-tower forward time
and the bytes passed between its towers read from the placement's own counters.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from alexgui.engine.model.paper import PaperAlexNet
from alexgui.engine.model.placement import place_model, take_tower_stats
from benchmarks.bench_train_gpu import make_step
from benchmarks.gpu_suite.context import CheckFailed, SectionContext
from benchmarks.gpu_suite.timing import interleaved, seconds, steps_for

NAME = "towers"
TITLE = "Two-tower split on one device: equality with the single-device model, and speed"
WEIGHT = 0.05
COLUMNS = [
    ("measurement", "measurement", "text"), ("precision", "precision", "text"), ("batch", "batch", "int"),
    ("equal", "equal (test tolerances)", "bool"), ("bitwise_equal", "bitwise equal", "bool"),
    ("logits_max_abs_diff", "logits max |diff|", "sci"), ("grads_max_abs_diff", "gradients max |diff|", "sci"),
    ("grads_max_rel_diff", "worst gradient rel. diff", "sci"),
    ("single_images_per_s", "single img/s", "rate"), ("split_images_per_s", "split img/s", "rate"),
    ("ratio", "split / single", "ratio"), ("tower_ms", "tower fwd ms (0, 1)", "text"),
    ("cross_mb_per_step", "MB between towers / step", "num"), ("timed", "timed", "text"),
]  # fmt: skip
# tests/test_placement.py's tolerances (CPU); the same kernels run on both sides here, so they hold on a GPU.
LOGITS_RTOL, LOGITS_ATOL = 1e-5, 1e-6
GRADS_RTOL, GRADS_ATOL = 1e-5, 1e-7


@contextmanager
def strict_numerics() -> Iterator[None]:
    """Deterministic cuDNN algorithms, no TF32: the same arithmetic on both sides of a comparison."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = False, True, False, False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = saved


def forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(123)  # the same dropout masks on both sides
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    return logits.detach(), {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def run(ctx: SectionContext) -> None:
    devices = [ctx.device, ctx.device]
    spec = ",".join(str(d) for d in devices)
    equal = check_equal(ctx, devices, spec)
    ctx.check_time("the speed comparison")
    speed(ctx, devices, spec)
    if not equal:
        raise CheckFailed(f"the split model on {spec} differs from the single-device model (see the first row)")


def check_equal(ctx: SectionContext, devices: list[torch.device], spec: str) -> bool:
    sizes, device = ctx.sizes, ctx.device
    b = sizes.tower_check_batch
    torch.manual_seed(0)
    single = PaperAlexNet(num_classes=sizes.classes)
    split = place_model(copy.deepcopy(single), devices)
    single.to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(b, 3, sizes.crop, sizes.crop, generator=gen).to(device)
    y = torch.randint(0, sizes.classes, (b,), generator=gen).to(device)
    with strict_numerics():
        logits_a, grads_a = forward_backward(single, x, y)
        logits_b, grads_b = forward_backward(split, x, y)
    if grads_a.keys() != grads_b.keys():
        raise CheckFailed(f"the split model has other parameters: {sorted(grads_a.keys() ^ grads_b.keys())[:5]}")
    equal = torch.allclose(logits_b, logits_a, rtol=LOGITS_RTOL, atol=LOGITS_ATOL) and all(
        torch.allclose(grads_b[k], grads_a[k], rtol=GRADS_RTOL, atol=GRADS_ATOL) for k in grads_a
    )
    bitwise = torch.equal(logits_a, logits_b) and all(torch.equal(grads_a[k], grads_b[k]) for k in grads_a)
    rel = max(float((grads_b[k] - grads_a[k]).norm() / grads_a[k].norm().clamp_min(1e-30)) for k in grads_a)
    ctx.row(
        "fp32 (no TF32)", b, measurement=f"logits and gradients, {spec} vs {device}", equal=equal, bitwise_equal=bitwise,
        logits_max_abs_diff=float((logits_a - logits_b).abs().max()),
        grads_max_abs_diff=max(float((grads_a[k] - grads_b[k]).abs().max()) for k in grads_a),
        grads_max_rel_diff=rel, logits_rtol=LOGITS_RTOL, grads_rtol=GRADS_RTOL,
    )  # fmt: skip
    return equal


def speed(ctx: SectionContext, devices: list[torch.device], spec: str) -> None:
    sizes, device = ctx.sizes, ctx.device
    if ctx.cuda:
        torch.backends.cudnn.benchmark = True
    batch, bf16 = sizes.tower_batch, ctx.cuda
    fmt = torch.channels_last if ctx.cuda else torch.contiguous_format
    torch.manual_seed(0)
    single = PaperAlexNet(num_classes=sizes.classes)
    split = place_model(copy.deepcopy(single), devices).to(memory_format=fmt)
    single.to(device).to(memory_format=fmt)
    steps = {"single": make_step(single, device, bf16), "split": make_step(split, device, bf16)}
    x = torch.randn(batch, 3, sizes.crop, sizes.crop, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, sizes.classes, (batch,), device=device)
    for step in steps.values():
        for _ in range(sizes.warmup):
            step(x, y)
    n = sizes.min_steps
    if sizes.min_steps < sizes.max_steps:
        one = max(seconds(partial(step, x, y), device) for step in steps.values())
        n = steps_for(one, min(sizes.segment_s, ctx.time_left() / (sizes.rounds * 2 * 1.5)), n, sizes.max_steps)
    take_tower_stats(split)  # forget the warm-up
    tower_ms = [0.0, 0.0]
    cross = 0

    def split_segment() -> None:
        nonlocal cross
        for _ in range(n):
            steps["split"](x, y)
        ms, sent = take_tower_stats(split)  # waits for the timed events, as the trainer does every step
        assert ms is not None and sent is not None  # a placed model always counts
        tower_ms[0] += ms[0]
        tower_ms[1] += ms[1]
        cross += sent

    medians = interleaved({"single": lambda: [steps["single"](x, y) for _ in range(n)], "split": split_segment},
                          sizes.rounds, device, warmup=0)  # fmt: skip
    total_steps = sizes.rounds * n
    ips = {name: n * batch / t for name, t in medians.items()}
    ctx.row(
        "bf16" if bf16 else "fp32", batch, measurement=f"training speed, {spec} vs {device}",
        single_images_per_s=ips["single"], split_images_per_s=ips["split"], ratio=ips["split"] / ips["single"],
        tower_ms=f"{tower_ms[0] / total_steps:.2f}, {tower_ms[1] / total_steps:.2f}",
        cross_mb_per_step=cross / total_steps / 1e6, timed=f"{sizes.rounds} x {n} steps", channels_last=ctx.cuda,
    )  # fmt: skip
    ctx.ran(f"equality: one forward and backward of batch {sizes.tower_check_batch} at crop {sizes.crop}; speed: "
            f"{sizes.rounds} alternating rounds of {n} steps at batch {batch} after {sizes.warmup} warm-up steps")

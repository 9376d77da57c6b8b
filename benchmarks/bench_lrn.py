"""Local response normalisation: torch's F.local_response_norm against our shifted-slice window sum.

    python -m benchmarks.bench_lrn [--batch 32] [--rounds 5]

Side by side in one process, A B A B after a warm-up, medians: the paper's LRN (k=2, n=5, alpha=1e-4,
beta=0.75) on one tower's norm1 (48x55x55) and norm2 (128x27x27) input, forward alone and forward plus
backward; then the whole paper network's training step (forward and backward of a batch) with each.
The two agree to float rounding (tests/test_lrn.py); what differs is how the window sum is formed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from alexgui.config import ModelConfig
from alexgui.engine.model.lrn import LocalResponseNorm
from alexgui.engine.model.networks import build_model
from benchmarks.machine import describe_cpu


def torch_lrn(module: LocalResponseNorm) -> Callable[[torch.Tensor], torch.Tensor]:
    """The former forward: torch's kernel (an average over the window, so alpha scaled by the size)."""
    alpha = module.alpha * module.size if module.formula == "paper" else module.alpha
    return lambda x: F.local_response_norm(x, module.size, alpha=alpha, beta=module.beta, k=module.k)


def median_ab(a: Callable[[], object], b: Callable[[], object], rounds: int) -> tuple[float, float]:
    a(), b()
    ta, tb = [], []
    for _ in range(rounds):
        for fn, ts in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def compare_layer(name: str, old: Callable[[torch.Tensor], torch.Tensor], lrn: LocalResponseNorm,
                  x: torch.Tensor, rounds: int) -> None:
    """One layer's forward and forward+backward, torch's LRN against ours, on the same input."""
    with torch.no_grad():
        torch.testing.assert_close(old(x), lrn(x))
        a, b = median_ab(lambda: old(x), lambda: lrn(x), rounds)
    print(f"{name + ' forward':28s} {1e3 * a:9.1f} ms {1e3 * b:7.1f} ms {a / b:8.2f}x")
    xg = x.clone().requires_grad_(True)
    a, b = median_ab(lambda: old(xg).sum().backward(), lambda: lrn(xg).sum().backward(), rounds)
    print(f"{name + ' fwd+bwd':28s} {1e3 * a:9.1f} ms {1e3 * b:7.1f} ms {a / b:8.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"{describe_cpu()}, batch {args.batch}")
    lrn = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0, formula="paper")
    old = torch_lrn(lrn)
    print(f"{'':28s} {'torch F.lrn':>12s} {'ours':>10s} {'speed-up':>9s}")
    for name, shape in (("norm1 (48x55x55)", (args.batch, 48, 55, 55)), ("norm2 (128x27x27)", (args.batch, 128, 27, 27))):
        compare_layer(name, old, lrn, torch.randn(shape).relu(), args.rounds)
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="paper", num_classes=10)).train()
    norms = [m for m in model.modules() if isinstance(m, LocalResponseNorm)]
    x = torch.randn(args.batch, 3, 224, 224)
    y = torch.randint(0, 10, (args.batch,))

    def step() -> None:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()

    def with_torch_lrn() -> None:
        for m in norms:
            m.forward = torch_lrn(m)  # type: ignore[method-assign]
        try:
            step()
        finally:
            for m in norms:
                del m.forward

    a, b = median_ab(with_torch_lrn, step, args.rounds)
    print(f"{'paper net training step':28s} {1e3 * a / args.batch:6.1f} ms/img {1e3 * b / args.batch:5.1f} ms/img {a / b:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

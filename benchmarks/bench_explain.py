"""The explanation methods: time per image against one forward plus backward pass, and the deletion check.

    python -m benchmarks.bench_explain [--model M] [--images DIR] [--n 40] [--rounds 5] [--json]

1. Speed, side by side in one process, the methods in turn in each round after a warm-up, medians:
   for the paper net and torchvision's (random weights, 10 classes; or --model's network), one image:
   B  one forward and backward pass as in training (every weight's gradient too), the unit;
   B' one forward and backward pass to the input only (no weight gradients: what the maps need);
   gradcam, guided-backprop, saliency, and occlusion with a 32-pixel patch at stride 16 (169 copies),
   each as explain() computes it (the probabilities' forward pass included).
   Printed as seconds and as multiples of B and of B' (written B_).
   The issue's goals: Grad-CAM at most 1.5 B; occlusion 32/16 under 2 s.
2. Faithfulness, with --model and --images (class subfolders): for the first --n images, taken in turn
   from each class, each method's deletion check for the image's top class: how often greying the map's
   top 10% of pixels lowers the probability more than greying a random 10%, and the mean drops.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from alexgui.config import ModelConfig
from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.inference.predict import TorchPredictor, expand_inputs
from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.model.networks import build_model
from alexgui.engine.understand.explain import METHODS, explain
from alexgui.engine.understand.faithfulness import deletion_check
from benchmarks.machine import describe_cpu


def random_predictor(arch: str) -> TorchPredictor:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, num_classes=10)).eval()
    return TorchPredictor(model, Preprocess.imagenet_mean_std(), [f"c{i}" for i in range(10)], arch, f"random {arch}")


def test_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.kron(rng.uniform(0, 255, (16, 16, 3)), np.ones((16, 16, 1))).astype(np.uint8)


def forward_backward(predictor: TorchPredictor, u8: np.ndarray) -> None:
    x = predictor.preprocess.preprocess_image_u8(u8).requires_grad_(True)
    predictor.model.zero_grad()
    predictor.model(x)[0, 0].backward()


def forward_backward_to_input(predictor: TorchPredictor, u8: np.ndarray) -> None:
    x = predictor.preprocess.preprocess_image_u8(u8).requires_grad_(True)
    torch.autograd.grad(predictor.model(x)[0, 0], [x])


def speed(predictor: TorchPredictor, rounds: int) -> dict[str, float]:
    """Median seconds per image of each method and of one forward+backward pass, interleaved."""
    u8 = test_image()
    jobs: dict[str, Callable[[], object]] = {
        "forward+backward": lambda: forward_backward(predictor, u8),
        "fwd+bwd to input": lambda: forward_backward_to_input(predictor, u8),
    }
    for method in METHODS:
        jobs[method] = lambda m=method: explain(predictor, u8, m, 0, patch=32, stride=16)
    for job in jobs.values():  # warm-up
        job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            t = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def balanced_images(folder: str, n: int) -> list[str]:
    """Up to n image files of the folder, taken in turn from each class subfolder."""
    classes = sorted(p for p in Path(folder).iterdir() if p.is_dir())
    per_class = [sorted(expand_inputs([str(c)])) for c in classes] or [sorted(expand_inputs([folder]))]
    chosen: list[str] = []
    i = 0
    while len(chosen) < n and any(i < len(files) for files in per_class):
        chosen += [files[i] for files in per_class if i < len(files)]
        i += 1
    return chosen[:n]


def faithfulness(predictor: TorchPredictor, folder: str, n: int) -> dict[str, dict[str, float]]:
    wins = {m: 0 for m in METHODS}
    top_drops: dict[str, list[float]] = {m: [] for m in METHODS}
    random_drops: dict[str, list[float]] = {m: [] for m in METHODS}
    used = 0
    for path in balanced_images(folder, n):
        try:
            u8 = load_256(path)
        except ImageError as e:
            print(f"skipped {e}")
            continue
        used += 1
        for method in METHODS:
            e = explain(predictor, u8, method)
            d = deletion_check(predictor, u8, e)
            wins[method] += d.map_wins
            top_drops[method].append(d.top_drop)
            random_drops[method].append(d.random_drop)
    return {m: {"images": used, "map_wins": wins[m], "mean_top_drop": float(np.mean(top_drops[m])),
                "mean_random_drop": float(np.mean(random_drops[m]))} for m in METHODS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a checkpoint or run folder (default: random paper and torchvision nets)")
    ap.add_argument("--images", help="a folder of class subfolders for the deletion check (needs --model)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-speed", action="store_true", help="only the deletion check")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print(describe_cpu())
    report: dict[str, object] = {}
    predictors = {"model": load_predictor(args.model, device="cpu")} if args.model else {
        "paper": random_predictor("paper"), "torchvision": random_predictor("torchvision")}
    for name, predictor in predictors.items():
        assert isinstance(predictor, TorchPredictor)
        if not args.no_speed:
            s = speed(predictor, args.rounds)
            report[f"speed/{name}"] = s
            unit, to_input = s["forward+backward"], s["fwd+bwd to input"]
            print(f"\n{name} ({predictor.arch}): seconds per image, median of {args.rounds}")
            print(f"  {'':18s} {'':9s} {'x B':>6s} {'x B_':>6s}")
            for method, t in s.items():
                print(f"  {method:18s} {t:7.3f} s {t / unit:6.2f} {t / to_input:6.2f}")
        if args.images:
            f = faithfulness(predictor, args.images, args.n)
            report[f"deletion/{name}"] = f
            print(f"\n{name}: deletion check on {args.images} (top 10% vs random 10% greyed)")
            for method, r in f.items():
                print(f"  {method:16s} map wins {r['map_wins']:3d}/{r['images']}  mean drop: top {100 * r['mean_top_drop']:5.1f}"
                      f" points, random {100 * r['mean_random_drop']:5.1f} points")
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

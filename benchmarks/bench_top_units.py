"""Top images per unit: the streaming top-K pass against a plain forward pass, and memory against gallery size.

    python -m benchmarks.bench_top_units [--images DIR] [--n 256] [--rounds 3] [--json]

1. Speed, side by side in one process, alternating in each round, medians: over the same --n images
   (imagenette-224-mini's val/ when present, else generated), at batch 32, for conv5 and fc7:
   F  the plain pass: decode at 256, centre crop, the network's forward (predict_u8's work);
   T  top_images(): the same decoding and forward, plus the layer's activations kept per batch and
      merged into every unit's running top 9 (no cache).
   Printed as images/s and T/F (the issue's goal: at least 0.8).
2. Memory: the peak resident size of a fresh process that runs one conv5 pass over 1/4 of the images,
   then over all of them; what the pass keeps is (units x 9), so the two should be alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from alexgui.config import ModelConfig
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.inference.predict import TorchPredictor, list_images
from alexgui.engine.model.networks import build_model
from alexgui.engine.understand.top_units import top_images
from benchmarks.machine import describe_cpu

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette-224-mini" / "val"
BATCH = 32


def predictor() -> TorchPredictor:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="paper", num_classes=10)).eval()
    return TorchPredictor(model, Preprocess.imagenet_mean_std(), [f"c{i}" for i in range(10)], "paper", "random paper")


def gallery(images: Path | None, n: int, scratch: Path) -> list[str]:
    if images is not None and images.is_dir():
        return [str(p) for p in list_images(images)][:n]
    from PIL import Image

    scratch.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = scratch / f"{i:04d}.png"
        if not path.exists():
            Image.fromarray(np.kron(rng.uniform(0, 255, (20, 20, 3)), np.ones((16, 16, 1))).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def plain_pass(p: TorchPredictor, paths: list[str]) -> None:
    for start in range(0, len(paths), BATCH):
        p.predict_u8(np.stack([p.load_image(path) for path in paths[start : start + BATCH]]))


def peak_rss_mb(paths: list[str]) -> float:
    code = (
        "import json,sys,resource\n"
        "from benchmarks.bench_top_units import predictor\n"
        "from alexgui.engine.understand.top_units import top_images\n"
        "paths=json.loads(sys.stdin.read())\n"
        "top_images(predictor(), paths, 'conv5', k=9, batch_size=32)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(paths), capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    paths = gallery(args.images, args.n, Path("/tmp/alexgui-bench-top-units"))
    source = str(args.images) if args.images is not None and args.images.is_dir() else "generated images"
    p = predictor()
    plain_pass(p, paths[:BATCH])  # warm-up
    times: dict[str, list[float]] = {"F": [], "T conv5": [], "T fc7": []}
    for _ in range(args.rounds):
        for name in times:
            start = time.perf_counter()
            if name == "F":
                plain_pass(p, paths)
            else:
                top_images(p, paths, name.split()[1], k=9, batch_size=BATCH)
            times[name].append(time.perf_counter() - start)
    rate = {name: len(paths) / statistics.median(t) for name, t in times.items()}
    quarter, whole = peak_rss_mb(paths[: len(paths) // 4]), peak_rss_mb(paths)
    result = {
        "machine": describe_cpu(), "images": len(paths), "source": source, "rounds": args.rounds,
        "images_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratio_conv5": round(rate["T conv5"] / rate["F"], 3), "ratio_fc7": round(rate["T fc7"] / rate["F"], 3),
        "peak_rss_mb": {str(len(paths) // 4): round(quarter), str(len(paths)): round(whole)},
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['machine']}; {len(paths)} images from {source}; medians of {args.rounds} rounds, batch {BATCH}")
    print(f"  F  plain forward pass        {rate['F']:7.1f} images/s")
    print(f"  T  top 9 of every conv5 unit {rate['T conv5']:7.1f} images/s   T/F = {result['ratio_conv5']:.2f}")
    print(f"  T  top 9 of every fc7 unit   {rate['T fc7']:7.1f} images/s   T/F = {result['ratio_fc7']:.2f}")
    print(f"  peak resident memory of a conv5 pass: {quarter:.0f} MB for {len(paths) // 4} images, "
          f"{whole:.0f} MB for {len(paths)}")


if __name__ == "__main__":
    main()

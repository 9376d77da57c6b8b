"""`alexgui evaluate`'s engine against a plain PyTorch evaluation loop, and its memory against the folder's size.

    python -m benchmarks.bench_evaluate [--images 500] [--big 5000] [--batch-size 32] [--rounds 3] [--crop 224]

1. Speed, side by side in one process, A B A B after a warm-up, medians of images/s:
   A  engine.understand.evaluation.evaluate over a folder of JPEGs (decoding included, one batch ahead);
   B  a plain loop over the same images already decoded in memory (Preprocess.test_batch, forward,
      softmax, top-5): the model's own ceiling on this machine.
   The issue's goal is A/B >= 0.9.
2. Memory: peak resident memory of a fresh process evaluating a folder of --big images against one of
   --images images (the same model and batch); streaming means the two are the same within 10%.

The images are generated (smooth colour fields with stripes, JPEG quality 90, 256x256) in a temporary
folder, in two class folders; the model is the paper network with random weights for 2 classes (what
is measured is the pipeline, not accuracy).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from alexgui.engine.training.memory import share_one_heap

share_one_heap()

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from alexgui.config import ModelConfig  # noqa: E402
from alexgui.engine.data.imageio import load_256  # noqa: E402
from alexgui.engine.data.transforms import Preprocess  # noqa: E402
from alexgui.engine.inference.predict import TorchPredictor  # noqa: E402
from alexgui.engine.model.networks import build_model  # noqa: E402
from alexgui.engine.understand.eval_images import find_evaluation_images  # noqa: E402
from alexgui.engine.understand.evaluation import evaluate  # noqa: E402
from benchmarks.machine import describe_cpu  # noqa: E402

CLASSES = ("warm", "cool")


def write_images(root: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    for i in range(n):
        c = CLASSES[i % 2]
        folder = root / c
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array((200, 90, 40) if c == "warm" else (40, 90, 200), np.float32)
        stripes = np.sin((xx * np.cos(rng.uniform(0, 3.14)) + yy * np.sin(rng.uniform(0, 3.14))) * rng.uniform(0.1, 0.5))
        pixels = base + 50 * stripes[..., None] + rng.normal(0, 8, (256, 256, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def predictor(crop: int) -> TorchPredictor:
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=2))
    return TorchPredictor(model, Preprocess.imagenet_mean_std(crop=crop), list(CLASSES), "random", "bench", "cpu")


def plain_loop(p: TorchPredictor, decoded: torch.Tensor, batch: int) -> float:
    """images/s of preprocess + forward + softmax + top-5 over images already in memory."""
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(decoded), batch):
            x, _ = p.preprocess.test_batch(decoded[i : i + batch], False)
            probs = torch.softmax(p.model(x).float(), dim=1)
            probs.topk(min(5, probs.shape[1]), dim=1)
    return len(decoded) / (time.perf_counter() - start)


def engine_loop(p: TorchPredictor, folder: Path, batch: int) -> float:
    images = find_evaluation_images(folder, p.class_names)
    start = time.perf_counter()
    report = evaluate(p, images, batch_size=batch)
    assert report.n == len(images.items)
    return report.n / (time.perf_counter() - start)


def peak_child(folder: Path, batch: int, crop: int) -> dict:
    """A fresh process evaluating `folder`: its peak resident memory (ru_maxrss) and images."""
    code = (
        "import json, resource, sys; sys.path.insert(0, '.');"
        "from benchmarks.bench_evaluate import predictor;"
        "from alexgui.engine.understand.eval_images import find_evaluation_images;"
        "from alexgui.engine.understand.evaluation import evaluate;"
        f"p = predictor({crop}); r = evaluate(p, find_evaluation_images({str(folder)!r}, p.class_names), batch_size={batch});"
        "print(json.dumps({'n': r.n, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--big", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--crop", type=int, default=224)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    try:
        small = write_images(work / "small", args.images)
        p = predictor(args.crop)
        files = sorted(small.rglob("*.jpg"))
        decoded = torch.from_numpy(np.stack([load_256(f) for f in files]))
        plain_loop(p, decoded[: args.batch_size], args.batch_size)  # warm-up
        engine_loop(p, small, args.batch_size)
        a, b = [], []
        for _ in range(args.rounds):
            a.append(engine_loop(p, small, args.batch_size))
            b.append(plain_loop(p, decoded, args.batch_size))
        ea, pb = statistics.median(a), statistics.median(b)
        print(f"{describe_cpu()}; paper net, 2 classes, batch {args.batch_size}, crop {args.crop}, {args.images} images")
        print(f"evaluate (decoding JPEGs included): {ea:.1f} images/s  (rounds: {', '.join(f'{x:.1f}' for x in a)})")
        print(f"plain loop on decoded images:       {pb:.1f} images/s  (rounds: {', '.join(f'{x:.1f}' for x in b)})")
        print(f"ratio evaluate / plain: {ea / pb:.3f} (goal >= 0.9)")
        del decoded
        if args.big:
            big = write_images(work / "big", args.big, seed=1)
            m_small, m_big = peak_child(small, args.batch_size, args.crop), peak_child(big, args.batch_size, args.crop)
            print(f"peak memory: {m_small['n']} images {m_small['peak_mb']:.0f} MB, {m_big['n']} images "
                  f"{m_big['peak_mb']:.0f} MB, ratio {m_big['peak_mb'] / m_small['peak_mb']:.3f} (goal: within 10%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

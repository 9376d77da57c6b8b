"""Inference speed: PyTorch eager vs ONNX Runtime on the CPU, measured side by side.

    python benchmarks/bench_inference.py [--arch paper|torchvision] [--threads N] [--rounds R]
                                         [--batches 1,32,128] [--image FILE] [--investigate]

Both backends run the same model (random weights, 1000 classes; speed does not depend on the values)
with the same number of intra-op threads, on the same preprocessed input, producing both outputs
(logits and fc7 features). Each measurement is interleaved (A B, then B A, ... after a warm-up of
each) and reported as the median, with the ONNX Runtime / PyTorch ratio: latency at batch 1 (lower
is better), throughput at larger batches (higher is better), and the end-to-end time from an image
file to its top-5 (decode, resize, preprocess, infer). --investigate adds ONNX Runtime variants
(graph optimisation level, thread spinning, thread count) at batch 1. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alexgui.config import ModelConfig
from alexgui.engine.data.imageio import load_256
from alexgui.engine.data.stats import DataStats
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.inference.onnx_export import export_onnx
from alexgui.engine.inference.onnx_providers import physical_cores
from alexgui.engine.inference.onnx_runtime import OnnxPredictor
from alexgui.engine.inference.parity import generated_images
from alexgui.engine.inference.predict import TorchPredictor
from alexgui.engine.model.networks import build_model
from alexgui.engine.store.checkpoint import weights_fingerprint
from benchmarks.machine import cpu_name


def interleaved(a: Callable[[], object], b: Callable[[], object], rounds: int, warmup: int = 2) -> tuple[float, float]:
    """Median seconds of a and b, run alternately (A B, B A, ...) after warming both up."""
    for _ in range(warmup):
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    for r in range(rounds):
        order = ((a, ta), (b, tb)) if r % 2 == 0 else ((b, tb), (a, ta))
        for fn, times in order:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def make_predictor(arch: str, classes: int) -> TorchPredictor:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, num_classes=classes))
    if arch == "paper":
        rng = np.random.default_rng(0)
        stats = DataStats(mean_image=rng.uniform(60, 200, (256, 256, 3)).astype(np.float32),
                          pca_eigvals=np.array([300.0, 30.0, 3.0], np.float32), pca_eigvecs=np.eye(3, dtype=np.float32))
        pre = Preprocess.from_stats(stats)
    else:
        pre = Preprocess.imagenet_mean_std()
    names = [f"class {i}" for i in range(classes)]
    return TorchPredictor(model, pre, names, weights_fingerprint(model.state_dict()), f"random {arch}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="paper", choices=["paper", "torchvision"])
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads for both (default: physical cores)")
    p.add_argument("--rounds", type=int, default=9, help="timed runs per backend and setting (median reported)")
    p.add_argument("--batches", default="1,32,128")
    p.add_argument("--image", type=Path, help="image file for the end-to-end time (default: a generated JPEG)")
    p.add_argument("--investigate", action="store_true", help="also time ONNX Runtime variants at batch 1")
    args = p.parse_args(argv)

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="alexgui-bench-") as folder:
        return run_benchmark(args, threads, batches, Path(folder))


def run_benchmark(args: argparse.Namespace, threads: int, batches: list[int], tmp: Path) -> int:
    torch_pred = make_predictor(args.arch, args.classes)
    print(f"exporting the {args.arch} model ...", file=sys.stderr)
    onnx_path = export_onnx(torch_pred, tmp / "model.onnx")
    onnx_pred = OnnxPredictor(onnx_path, "cpu", threads=threads)
    model = torch_pred.model

    @torch.inference_mode()
    def torch_forward(x: torch.Tensor) -> None:
        model.forward_head(model.forward_features(x))

    rows: list[tuple[str, str, str, str]] = []
    for b in batches:
        print(f"batch {b} ...", file=sys.stderr)
        x = torch_pred.preprocess.center_batch(torch.from_numpy(generated_images(b, seed=b)))
        xn = x.numpy()
        rounds = args.rounds if b < 64 else max(3, args.rounds // 2)
        t_torch, t_ort = interleaved(lambda x=x: torch_forward(x), lambda xn=xn: onnx_pred.run_preprocessed(xn), rounds)
        if b == 1:
            rows.append(("latency, batch 1", f"{t_torch * 1e3:.1f} ms", f"{t_ort * 1e3:.1f} ms", f"{t_ort / t_torch:.2f}"))
        else:
            rows.append((f"throughput, batch {b}", f"{b / t_torch:.1f} img/s", f"{b / t_ort:.1f} img/s",
                         f"{t_torch / t_ort:.2f}"))

    image = args.image
    if image is None:
        from PIL import Image

        image = tmp / "photo.jpg"
        big = np.asarray(Image.fromarray(generated_images(1, seed=42)[0]).resize((640, 480)))
        Image.fromarray(big).save(image, quality=90)

    def to_top5(predictor: TorchPredictor | OnnxPredictor) -> Callable[[], list[int]]:
        def run() -> list[int]:
            probs, _ = predictor.predict_u8(load_256(image)[None])
            return list(np.argsort(-probs[0])[:5])

        return run

    print("end to end ...", file=sys.stderr)
    e_torch, e_ort = interleaved(to_top5(torch_pred), to_top5(onnx_pred), args.rounds)
    rows.append(("file to top-5, 1 image", f"{e_torch * 1e3:.1f} ms", f"{e_ort * 1e3:.1f} ms", f"{e_ort / e_torch:.2f}"))

    import onnxruntime as ort

    print(f"\nAlexNet ({args.arch}, {args.classes} classes, float32) on {cpu_name()}; "
          f"{threads} intra-op thread(s) for both; torch {torch.__version__}, onnxruntime {ort.__version__}; "
          f"medians of {args.rounds} interleaved runs (batch >= 64: {max(3, args.rounds // 2)}).\n")
    print("| measurement | PyTorch eager | ONNX Runtime (CPU) | ratio ORT/PyTorch |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nratio: time ratio for latency rows (below 1 = ONNX Runtime faster), speed-up for throughput rows "
          "(above 1 = ONNX Runtime faster).")

    if args.investigate:
        investigate(onnx_path, torch_forward, torch_pred, threads, args.rounds)
    return 0


def investigate(onnx_path: Path, torch_forward: Callable[[torch.Tensor], None], torch_pred: TorchPredictor,
                threads: int, rounds: int) -> None:
    """Batch-1 latency of ONNX Runtime variants, each interleaved with PyTorch."""
    import onnxruntime as ort

    x = torch_pred.preprocess.center_batch(torch.from_numpy(generated_images(1)))
    xn = x.numpy()
    variants = []
    for level_name, level in (("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
                              ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)):
        for spinning in ("1", "0"):
            for n in sorted({1, threads}):
                variants.append((f"opt={level_name} spin={spinning} threads={n}", level, spinning, n))
    print("\n| ONNX Runtime variant, batch 1 | ORT latency | PyTorch latency (same threads) | ratio |")
    print("|---|---|---|---|")
    for name, level, spinning, n in variants:
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        torch.set_num_threads(n)
        t_torch, t_ort = interleaved(
            lambda x=x: torch_forward(x), lambda session=session, xn=xn: session.run(None, {"input": xn}), rounds
        )
        print(f"| {name} | {t_ort * 1e3:.1f} ms | {t_torch * 1e3:.1f} ms | {t_ort / t_torch:.2f} |")
    torch.set_num_threads(threads)


if __name__ == "__main__":
    raise SystemExit(main())

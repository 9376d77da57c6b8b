"""Section: inference with PyTorch eager (fp32, bf16 autocast) and ONNX Runtime on every provider it has.

The engine's own pieces: a TorchPredictor (paper net, 1000 classes, random weights: speed does not
depend on the values), export_onnx (the dynamo exporter, with alexgui's metadata), OnnxPredictor on
each provider this onnxruntime build offers (the CPU build: CPU only; a GPU build adds CUDA, whose
result is kept only if the session really runs there). Per batch, all backends run in turn on the same
preprocessed batch (A B C, C B A, ...), medians; the ratio is each one's time over PyTorch fp32's.
The end-to-end row times one JPEG on disk to its top-5 (decode, resize, crop, infer, sort) per backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from alexgui.config import ModelConfig
from alexgui.engine.data.imageio import load_256
from alexgui.engine.data.stats import DataStats
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.inference.onnx_export import export_onnx
from alexgui.engine.inference.onnx_providers import physical_cores
from alexgui.engine.inference.onnx_runtime import OnnxPredictor
from alexgui.engine.inference.predict import Predictor, TorchPredictor
from alexgui.engine.model.networks import build_model
from alexgui.engine.store.checkpoint import weights_fingerprint
from benchmarks.gpu_suite.context import CheckFailed, SectionContext
from benchmarks.gpu_suite.data import first_val_image
from benchmarks.gpu_suite.timing import interleaved, seconds

NAME = "inference"
TITLE = "Inference: PyTorch eager vs ONNX Runtime, and a JPEG on disk to its top-5"
WEIGHT = 0.10
COLUMNS = [
    ("measurement", "measurement", "text"), ("backend", "backend", "text"), ("precision", "precision", "text"),
    ("batch", "batch", "int"), ("ms", "ms per call", "ms"), ("images_per_s", "img/s", "rate"),
    ("time_ratio", "time / PyTorch fp32", "ratio"), ("timed", "timed", "text"),
]  # fmt: skip
# ONNX Runtime device strings (engine/inference/onnx_runtime.py) per provider; TensorRT is left out: building its
# engines takes minutes per batch shape, more than this section's share.
PROVIDERS = {"CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}


def make_predictor(ctx: SectionContext) -> TorchPredictor:
    """The paper net with random weights and made-up statistics of the suite's image size."""
    sizes = ctx.sizes
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="paper", num_classes=1000))
    rng = np.random.default_rng(0)
    stats = DataStats(mean_image=rng.uniform(60, 200, (sizes.resize, sizes.resize, 3)).astype(np.float32),
                      pca_eigvals=np.array([300.0, 30.0, 3.0], np.float32), pca_eigvecs=np.eye(3, dtype=np.float32))
    pre = Preprocess.from_stats(stats, crop=sizes.crop)
    names = [f"class {i}" for i in range(1000)]
    return TorchPredictor(model, pre, names, weights_fingerprint(model.state_dict()), "random paper", ctx.device)


def onnx_backends(ctx: SectionContext, path: object, threads: int) -> dict[str, OnnxPredictor]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    backends: dict[str, OnnxPredictor] = {}
    for provider, device in PROVIDERS.items():
        if provider not in available:
            continue
        if device != "cpu" and not ctx.cuda:
            ctx.note(f"{provider} not tried: the suite runs on the CPU")
            continue
        predictor = OnnxPredictor(path, device, threads=threads)  # type: ignore[arg-type]
        if predictor.provider != provider:  # a GPU build falls back to the CPU when CUDA is unusable
            ctx.note(f"{provider} did not load ({'; '.join(predictor.provider_notes) or 'fell back'}); not timed")
            continue
        label = f"ONNX Runtime {provider.removesuffix('ExecutionProvider')}"
        backends[label + (f", {threads} threads" if device == "cpu" else "")] = predictor
    skipped = [p for p in available if p not in PROVIDERS]
    if skipped:
        ctx.note(f"ONNX Runtime providers not timed: {', '.join(skipped)}")
    return backends


def run(ctx: SectionContext) -> None:
    sizes, device = ctx.sizes, ctx.device
    threads = physical_cores() if ctx.cuda else torch.get_num_threads()
    torch_pred = make_predictor(ctx)
    model = torch_pred.model
    start = time.monotonic()
    onnx: dict[str, OnnxPredictor] = {}
    problem = ""
    try:  # without ONNX the PyTorch rows are still worth having; the status says what failed
        path = export_onnx(torch_pred, ctx.work / "paper.onnx")
        ctx.record["figures"]["onnx_export_s"] = round(time.monotonic() - start, 1)
        onnx = onnx_backends(ctx, path, threads)
        if not onnx:
            problem = "no ONNX Runtime provider could be timed"
    except Exception as e:  # noqa: BLE001 - the exporter and ONNX Runtime raise many types
        problem = f"ONNX export or session failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ctx.note(problem)
    if not ctx.sizes.bf16:
        ctx.note("PyTorch bf16 autocast not timed: bf16 is off in the dry run")
    torch_label = f"PyTorch eager ({device})"

    def torch_forward(x: torch.Tensor, bf16: bool) -> Callable[[], object]:
        @torch.inference_mode()
        def call() -> object:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return model.forward_head(model.forward_features(x))

        return call

    for b in sizes.infer_batches:
        ctx.check_time(f"batch {b}")
        u8 = torch.from_numpy(np.random.default_rng(b).integers(0, 256, (b, sizes.resize, sizes.resize, 3), np.uint8))
        x = torch_pred.preprocess.center_batch(u8.to(device))
        xn = x.float().cpu().numpy()
        fns: dict[str, Callable[[], object]] = {f"{torch_label}|fp32": torch_forward(x, False)}
        if ctx.sizes.bf16:
            fns[f"{torch_label}|bf16 autocast"] = torch_forward(x, True)
        for label, predictor in onnx.items():
            fns[f"{label}|fp32"] = partial(predictor.run_preprocessed, xn)
        rounds = rounds_for(ctx, fns, len(sizes.infer_batches))
        medians = interleaved(fns, rounds, device, warmup=1)
        base = medians[f"{torch_label}|fp32"]
        for key, t in medians.items():
            backend, precision = key.split("|")
            ctx.row(precision, b, measurement="latency" if b == 1 else "throughput", backend=backend, ms=t * 1e3,
                    images_per_s=b / t, time_ratio=t / base, timed=f"median of {rounds}")  # fmt: skip
    end_to_end(ctx, torch_pred, onnx)
    ctx.ran(f"paper net, 1000 classes, crop {sizes.crop}; batches {', '.join(map(str, sizes.infer_batches))}; ONNX "
            f"Runtime with {threads} intra-op threads on the CPU; export at opset default, float32")
    if problem:
        raise CheckFailed(problem)


def rounds_for(ctx: SectionContext, fns: dict[str, Callable[[], object]], batches_left: int) -> int:
    """As many rounds as this batch's part of the share allows, 3 to infer_rounds."""
    if ctx.sizes.infer_rounds <= 3:
        return 3
    one_round = sum(seconds(fn, ctx.device) for fn in fns.values())  # also a warm-up
    share = max(ctx.time_left(), 0.0) / max(batches_left, 1) / 2  # leave half for the end-to-end rows
    return max(3, min(ctx.sizes.infer_rounds, int(share / max(one_round, 1e-9))))


def end_to_end(ctx: SectionContext, torch_pred: TorchPredictor, onnx: dict[str, OnnxPredictor]) -> None:
    image = first_val_image(ctx.data)
    size = torch_pred.preprocess.resize

    def top5(predictor: Predictor) -> Callable[[], list[int]]:
        def call() -> list[int]:
            probs, _ = predictor.predict_u8(load_256(image, size))
            return list(np.argsort(-probs[0])[:5])

        return call

    fns = {f"PyTorch eager ({ctx.device})": top5(torch_pred), **{label: top5(p) for label, p in onnx.items()}}
    rounds = max(3, ctx.sizes.infer_rounds)
    medians = interleaved(fns, rounds, ctx.device, warmup=1)
    base = next(iter(medians.values()))
    for backend, t in medians.items():
        ctx.row("fp32", 1, measurement=f"file to top-5 ({image.suffix} on disk)", backend=backend, ms=t * 1e3,
                images_per_s=1 / t, time_ratio=t / base, timed=f"median of {rounds}")  # fmt: skip

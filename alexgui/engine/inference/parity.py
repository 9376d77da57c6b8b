"""The parity check of an export: PyTorch and ONNX Runtime on the same images (generated ones, plus
real ones when a folder is given) must agree within a tolerance, top-1 classes included. The report is
written beside the ONNX file as JSON.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexgui.engine.inference.onnx_export import (
    DEFAULT_OPSET,
    ExportError,
    Progress,
    export_onnx,
)
from alexgui.engine.inference.onnx_runtime import OnnxPredictor
from alexgui.engine.inference.predict import TorchPredictor
from alexgui.engine.store.atomic import atomic_write_text

# Parity tolerances on the largest |logit difference|, relative to the largest |logit| (at least 1).
# float32: both runtimes compute the same arithmetic in a different order (~1e-6 relative in
# practice). float16: ~3 significant digits per layer, through eight layers.
TOLERANCE = {"float32": 1e-3, "float16": 5e-2}
GENERATED_IMAGES = 8
MAX_REAL_IMAGES = 64
PARITY_BATCH = 16

@dataclass
class SourceParity:
    """PyTorch vs ONNX Runtime on one set of images."""

    images: int = 0
    max_abs_logit_diff: float = 0.0
    max_abs_feature_diff: float = 0.0
    logit_scale: float = 0.0  # the largest |logit| PyTorch produced
    top1_agreement: float = 1.0  # share of images with the same top-1 class
    top5_agreement: float = 1.0  # share of images with the same top-5 set
    disagreements: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ParityReport:
    onnx: str
    precision: str
    provider: str
    tolerance: float  # allowed max |logit diff| relative to max(1, largest |logit|)
    passed: bool
    generated: SourceParity
    real: SourceParity | None
    real_dir: str | None
    skipped: list[str]  # real images that could not be read, "PATH: reason"
    seconds: float
    torch_version: str = torch.__version__
    onnxruntime_version: str = ""

    @property
    def max_abs_logit_diff(self) -> float:
        return max(self.generated.max_abs_logit_diff, self.real.max_abs_logit_diff if self.real else 0.0)

    @property
    def top1_agreement(self) -> float:
        sets = [s for s in (self.generated, self.real) if s is not None and s.images]
        total = sum(s.images for s in sets)
        return sum(s.top1_agreement * s.images for s in sets) / total if total else 1.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_abs_logit_diff"] = self.max_abs_logit_diff
        d["top1_agreement"] = self.top1_agreement
        return d

    def summary(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        parts = [f"parity {verdict}: largest |logit difference| {self.max_abs_logit_diff:.3g} "
                 f"(tolerance {self.tolerance:.3g} x max(1, |logit|)), top-1 agreement {self.top1_agreement:.1%}",
                 f"  generated images: {self.generated.images}"]
        if self.real is not None:
            parts.append(f"  real images: {self.real.images} from {self.real_dir} "
                         f"(max diff {self.real.max_abs_logit_diff:.3g}, top-1 {self.real.top1_agreement:.1%})")
        if self.skipped:
            parts.append(f"  skipped {len(self.skipped)} unreadable image(s), e.g. {self.skipped[0]}")
        parts.append(f"  precision {self.precision}, provider {self.provider}")
        return "\n".join(parts)


def generated_images(n: int = GENERATED_IMAGES, seed: int = 0) -> np.ndarray:
    """(n, 256, 256, 3) uint8: smooth colour fields with stripes and noise, reproducible from seed.

    Pure noise would push every image towards the same class; structure spreads the predictions.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32) / 255.0
    images = np.empty((n, 256, 256, 3), np.uint8)
    for i in range(n):
        base = rng.uniform(0, 255, size=3)
        ramp = rng.uniform(-120, 120, size=(2, 3))
        freq, phase = rng.uniform(4, 40), rng.uniform(0, 6.28)
        angle = rng.uniform(0, 3.14)
        stripes = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)[..., None] * rng.uniform(10, 60)
        img = base + xx[..., None] * ramp[0] + yy[..., None] * ramp[1] + stripes + rng.normal(0, 8, (256, 256, 3))
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images


def parity_check(
    predictor: TorchPredictor,
    onnx_path: str | os.PathLike[str],
    image_paths: Sequence[str | os.PathLike[str]] = (),
    real_dir: str | None = None,
    generated: int = GENERATED_IMAGES,
    device: str = "cpu",
    progress: Progress | None = None,
) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same preprocessed images and compare their outputs."""
    import onnxruntime as ort

    from alexgui.engine.data.imageio import ImageError

    report = progress or (lambda message: None)
    start = time.perf_counter()
    report(f"loading {onnx_path} in ONNX Runtime")
    session = OnnxPredictor(onnx_path, device)
    tolerance = TOLERANCE.get(session.precision, TOLERANCE["float16"])
    report(f"comparing on {generated} generated images")
    gen = _compare(predictor, session, generated_images(generated), [f"generated #{i}" for i in range(generated)])
    real = None
    skipped: list[str] = []
    if image_paths:
        loaded, names = [], []
        for path in list(image_paths)[:MAX_REAL_IMAGES]:
            try:
                loaded.append(predictor.load_image(path))
                names.append(str(path))
            except ImageError as e:
                skipped.append(str(e))
        report(f"comparing on {len(loaded)} images from {real_dir or 'the given files'}")
        side = predictor.decode_size
        real = _compare(predictor, session, np.stack(loaded) if loaded else np.zeros((0, side, side, 3), np.uint8), names)
    passed = all(_passes(s, tolerance) for s in (gen, real) if s is not None)
    return ParityReport(
        onnx=str(onnx_path), precision=session.precision, provider=session.provider, tolerance=tolerance,
        passed=passed, generated=gen, real=real, real_dir=real_dir, skipped=skipped,
        seconds=round(time.perf_counter() - start, 3), onnxruntime_version=ort.__version__,
    )


def _passes(s: SourceParity, tolerance: float) -> bool:
    allowed = tolerance * max(1.0, s.logit_scale)
    # A different top-1 is acceptable only where the two classes are tied within the tolerance.
    return s.max_abs_logit_diff <= allowed and all(d["margin"] <= 2 * allowed for d in s.disagreements)


@torch.inference_mode()
def _compare(predictor: TorchPredictor, onnx: OnnxPredictor, u8: np.ndarray, names: list[str]) -> SourceParity:
    result = SourceParity(images=len(u8))
    if not len(u8):
        return result
    t_logits, t_feats, o_logits, o_feats = [], [], [], []
    model, device = predictor.model, next(predictor.model.parameters()).device
    pre = predictor.preprocess
    for start in range(0, len(u8), PARITY_BATCH):
        batch = torch.from_numpy(u8[start : start + PARITY_BATCH])
        # One preprocessed tensor feeds both runtimes: any difference is the graph's.
        x = pre.center_batch(batch.to(pre.mean.device))
        feats = model.forward_features(x.to(device))
        t_feats.append(feats.float().cpu().numpy())
        t_logits.append(model.forward_head(feats).float().cpu().numpy())
        logits, features = onnx.run_preprocessed(x.cpu().numpy())
        o_logits.append(logits)
        o_feats.append(features if features is not None else np.full_like(t_feats[-1], np.nan))
    tl, ol = np.concatenate(t_logits), np.concatenate(o_logits)
    tf, of = np.concatenate(t_feats), np.concatenate(o_feats)
    result.max_abs_logit_diff = float(np.abs(tl - ol).max())
    result.max_abs_feature_diff = float(np.abs(tf - of).max())
    result.logit_scale = float(np.abs(tl).max())
    t_top, o_top = tl.argmax(1), ol.argmax(1)
    k = min(5, tl.shape[1])
    t5, o5 = np.argsort(-tl, 1)[:, :k], np.argsort(-ol, 1)[:, :k]
    result.top1_agreement = float((t_top == o_top).mean())
    result.top5_agreement = float(np.mean([set(a) == set(b) for a, b in zip(t5, o5)]))
    for i in np.flatnonzero(t_top != o_top):
        margin = float(tl[i, t_top[i]] - tl[i, o_top[i]])
        result.disagreements.append({"image": names[i], "torch": int(t_top[i]), "onnx": int(o_top[i]), "margin": margin})
    return result


def parity_path(onnx_path: str | os.PathLike[str]) -> Path:
    """FILE.onnx -> FILE.parity.json beside it."""
    p = Path(onnx_path)
    return p.with_name((p.stem if p.suffix.lower() == ".onnx" else p.name) + ".parity.json")


@dataclass
class ExportResult:
    path: Path
    parity: ParityReport
    parity_path: Path
    seconds: float
    size_bytes: int


def export_and_check(
    predictor: TorchPredictor,
    out: str | os.PathLike[str],
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    images_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export, then the parity check (generated images, plus up to MAX_REAL_IMAGES from images_dir),
    saved as FILE.parity.json beside the model. The CLI and the app's File > Export both use this."""
    from alexgui.engine.inference.predict import list_images

    start = time.perf_counter()
    out = Path(out)
    images: list[Path] = []
    if images_dir is not None:
        folder = Path(images_dir)
        if not folder.is_dir():
            raise ExportError(folder, "the --images folder does not exist or is not a folder")
        images = list_images(folder)
        if not images:
            raise ExportError(folder, "no image files in the --images folder")
    path = export_onnx(predictor, out, fp16=fp16, opset=opset, progress=progress)
    report = parity_check(predictor, path, images, str(images_dir) if images_dir else None, progress=progress)
    report_path = parity_path(path)
    atomic_write_text(report_path, json.dumps(report.to_json(), indent=2) + "\n")
    return ExportResult(path, report, report_path, round(time.perf_counter() - start, 3), path.stat().st_size)

"""Export a model to ONNX (dynamic batch, logits + fc7 features, self-describing metadata) and check
the export against PyTorch.

The exporter is torch.onnx's dynamo exporter (torch.export + onnxscript): it gives a clean graph with
a symbolic batch axis, and unlike the TorchScript exporter it is the maintained path. It natively
writes opset 18 and newer; lower opsets would need a down-conversion that fails on Pad (used by LRN),
so opsets below 18 are refused instead of silently writing 18.

float16 export: weights and arithmetic in float16, with the input and outputs kept float32 (casts
inside the graph), so callers feed the same arrays whatever the precision.

The file is built in memory, given its metadata, checked with onnx.checker (full check, including
shape inference) and only then written, atomically, so a failed export never leaves a file behind.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from alexgui import __version__
from alexgui.engine.atomic import atomic_target, atomic_write_text
from alexgui.engine.onnx_predict import (
    DECODE_DESCRIPTION,
    FEATURE_DIM,
    FEATURES_NAME,
    FORMAT_VERSION,
    INPUT_NAME,
    LOGITS_NAME,
    META_ARCH,
    META_CLASS_NAMES,
    META_DECODE,
    META_FINGERPRINT,
    META_FORMAT,
    META_INPUT,
    META_OUTPUTS,
    META_PRECISION,
    META_PREPROCESSING,
    META_SOURCE,
    META_STATS,
    META_VERSION,
    META_WNIDS,
    OnnxPredictor,
    encode_array,
    stat_tensors,
)

if TYPE_CHECKING:
    from alexgui.engine.predict import TorchPredictor

DEFAULT_OPSET = 18  # the exporter's native opset: no conversion step, and TensorRT 8.6+ reads it
MIN_OPSET = 18
MAX_OPSET = 24  # the newest ai.onnx opset checked to export and run with this onnxruntime

# Parity tolerances on the largest |logit difference|, relative to the largest |logit| (at least 1).
# float32: both runtimes compute the same arithmetic in a different order (~1e-6 relative in
# practice). float16: ~3 significant digits per layer, through eight layers.
TOLERANCE = {"float32": 1e-3, "float16": 5e-2}
GENERATED_IMAGES = 8
MAX_REAL_IMAGES = 64
PARITY_BATCH = 16

Progress = Callable[[str], None]


class ExportError(Exception):
    """An export that cannot be done; str() names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class _LogitsAndFeatures(nn.Module):
    """The exported graph: one forward pass giving both outputs (fc8 reuses fc7's features)."""

    def __init__(self, model: nn.Module, fp16: bool) -> None:
        super().__init__()
        self.model = model
        self.fp16 = fp16

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.fp16:
            x = x.to(torch.float16)
        features = self.model.forward_features(x)
        logits = self.model.forward_head(features)
        return logits.to(torch.float32), features.to(torch.float32)


def export_onnx(
    predictor: TorchPredictor,
    out: str | os.PathLike[str],
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    progress: Progress | None = None,
) -> Path:
    """Write predictor's model to `out` as ONNX with alexgui metadata; returns the path.

    Raises ExportError naming `out` and the problem. The export runs on the CPU whatever device the
    predictor uses (a copy of the model is exported, the predictor is not touched).
    """
    import onnx

    out = Path(out)
    report = progress or (lambda message: None)
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(out, f"opset {opset!r} is not supported; choose {MIN_OPSET}..{MAX_OPSET}")
    precision = "float16" if fp16 else "float32"
    report(f"tracing the {predictor.arch} model ({precision}, opset {opset})")
    model = copy.deepcopy(predictor.model).to("cpu", torch.float16 if fp16 else torch.float32).eval()
    wrapper = _LogitsAndFeatures(model, fp16).eval()
    crop = predictor.preprocess.crop
    example = torch.zeros(2, 3, crop, crop)
    try:
        program = torch.onnx.export(
            wrapper,
            (example,),
            f=None,
            input_names=[INPUT_NAME],
            output_names=[LOGITS_NAME, FEATURES_NAME],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=65536)}},
            opset_version=opset,
            dynamo=True,
            external_data=False,
            optimize=True,
            verify=False,
            verbose=False,
        )
    except Exception as e:  # the exporter raises many types; the user needs the first line
        raise ExportError(out, f"the ONNX exporter failed ({type(e).__name__}: {_first_line(e)})") from None
    if program is None:
        raise ExportError(out, "the ONNX exporter returned no program")
    report("adding metadata and checking the graph")
    proto = program.model_proto
    got_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if got_opset != opset:
        raise ExportError(out, f"asked for opset {opset} but the exporter wrote {got_opset}")
    _power_three_quarters_as_square_roots(proto)
    for key, value in build_metadata(predictor, precision).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = describe_recipe(predictor, precision)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(out, f"the exported graph fails onnx.checker ({_first_line(e)})") from None
    report(f"writing {out}")
    try:
        with atomic_target(out) as tmp:
            onnx.save_model(proto, tmp)
    except OSError as e:
        raise ExportError(out, f"cannot write ({e.strerror or e})") from None
    return out


def _power_three_quarters_as_square_roots(proto: Any) -> int:
    """Rewrite Pow(x, 0.75) as sqrt(x) * sqrt(sqrt(x)); returns how many were rewritten.

    The paper's LRN raises its denominator to beta = 0.75. ONNX Runtime's CPU Pow with a fractional
    exponent calls pow() per element, ~10% of the paper model's batch-1 time; two vectorised square
    roots and a product give the same value (within 1-2 ulp; for x < 0 both are NaN) in a fraction
    of the time. Other exponents are left alone.
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    constants = {t.name: t for t in graph.initializer}
    constants.update({n.output[0]: n.attribute[0].t for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})

    def is_three_quarters(name: str) -> bool:
        if name not in constants:
            return False
        value = numpy_helper.to_array(constants[name])
        return value.size == 1 and value.dtype.kind == "f" and float(value.reshape(())) == 0.75

    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type == "Pow" and node.domain in ("", "ai.onnx") and is_three_quarters(node.input[1]):
            x, y = node.input[0], node.output[0]
            root, fourth_root = f"{y}__sqrt", f"{y}__sqrt_sqrt"
            nodes += [
                helper.make_node("Sqrt", [x], [root], name=f"{node.name}__sqrt"),
                helper.make_node("Sqrt", [root], [fourth_root], name=f"{node.name}__sqrt_sqrt"),
                helper.make_node("Mul", [root, fourth_root], [y], name=f"{node.name}__x_pow_0_75"),
            ]
            rewritten += 1
        else:
            nodes.append(node)
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        unused = [t for t in graph.initializer if t.name not in used]
        for t in unused:
            graph.initializer.remove(t)
    return rewritten


def build_metadata(predictor: TorchPredictor, precision: str) -> dict[str, str]:
    """metadata_props of an export: everything needed to use the file with nothing else."""
    pre = predictor.preprocess
    c = pre.crop
    meta = {
        META_FORMAT: FORMAT_VERSION,
        META_VERSION: __version__,
        META_ARCH: predictor.arch,
        META_CLASS_NAMES: json.dumps(list(predictor.class_names)),
        META_PREPROCESSING: json.dumps(pre.describe()),
        META_STATS: json.dumps({k: encode_array(v.numpy()) for k, v in stat_tensors(pre).items()}),
        META_DECODE: json.dumps({"resize": pre.resize, "method": DECODE_DESCRIPTION}),
        META_INPUT: json.dumps({"name": INPUT_NAME, "shape": ["batch", 3, c, c], "dtype": "float32",
                                "layout": "NCHW", "channel_order": "RGB"}),
        META_OUTPUTS: json.dumps({
            LOGITS_NAME: f"(batch, {len(predictor.class_names)}) fc8 before softmax",
            FEATURES_NAME: f"(batch, {FEATURE_DIM}) fc7 after ReLU (retrieval vector)",
        }),
        META_FINGERPRINT: predictor.fingerprint,
        META_SOURCE: str(predictor.source),
        META_PRECISION: precision,
    }
    if predictor.wnids is not None:
        meta[META_WNIDS] = json.dumps(list(predictor.wnids))
    return meta


def describe_recipe(predictor: TorchPredictor, precision: str) -> str:
    """The preprocessing in words, for the model's doc_string (what Netron and other tools show)."""
    pre = predictor.preprocess
    d = pre.describe()
    c = pre.crop
    if d["mode"] == "mean_image":
        normalise = (f"keep RGB values on 0..255 and subtract the same {c}x{c} crop of the training set's mean "
                     f"image (metadata {META_STATS}, entry 'stats.mean_image': float32 {pre.resize}x{pre.resize}x3, "
                     "HWC, little-endian, base64)")
    else:
        normalise = f"scale RGB to 0..1, subtract mean {d['mean']} and divide by std {d['std']} per channel"
    return (
        f"alexgui AlexNet ({predictor.arch} architecture, {len(predictor.class_names)} classes, {precision} weights). "
        f"Preparing an image: {DECODE_DESCRIPTION} (resize = {pre.resize}); take the central {c}x{c} crop "
        f"(or the paper's ten crops: four corners and centre, and their horizontal reflections, averaging "
        f"the softmax); {normalise}. Input '{INPUT_NAME}': float32 (batch, 3, {c}, {c}), RGB, NCHW. "
        f"Outputs: '{LOGITS_NAME}' (batch, classes) before softmax; '{FEATURES_NAME}' (batch, {FEATURE_DIM}), "
        f"fc7 after ReLU. Class names: metadata {META_CLASS_NAMES} (JSON list). Machine-readable preprocessing: "
        f"metadata {META_PREPROCESSING}."
    )


# ---- parity ----------------------------------------------------------------------------------------


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

    from alexgui.engine.imageio import ImageError, load_256

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
                loaded.append(load_256(path))
                names.append(str(path))
            except ImageError as e:
                skipped.append(str(e))
        report(f"comparing on {len(loaded)} images from {real_dir or 'the given files'}")
        real = _compare(predictor, session, np.stack(loaded) if loaded else np.zeros((0, 256, 256, 3), np.uint8), names)
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
    from alexgui.engine.predict import list_images

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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__

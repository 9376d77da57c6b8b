"""Export a model to ONNX (dynamic batch, logits + fc7 features, self-describing metadata) and check
the export against PyTorch.

The exporter is torch.onnx's dynamo exporter (torch.export + onnxscript): it gives a clean graph with
a symbolic batch axis, and unlike the TorchScript exporter it is the maintained path. It natively
writes opset 18 and newer; lower opsets would need a down-conversion that fails on Pad (used by LRN),
so opsets below 18 are refused instead of silently writing 18.

float16 export: weights and arithmetic in float16, with the input and outputs kept float32 (casts
inside the graph), so callers feed the same arrays whatever the precision.

The file is built in memory, given its metadata, checked with onnx.checker (full check, including
shape inference) and only then written, atomically, so a failed export never leaves a file behind;
the temporaries of a killed one are swept at the next export into the same folder.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from alexgui import __version__
from alexgui.engine.inference.onnx_format import (
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
    encode_array,
    stat_tensors,
)
from alexgui.engine.store.atomic import atomic_target, remove_stale_temporaries
from alexgui.errors import AlexguiError

if TYPE_CHECKING:
    from alexgui.engine.inference.predict import TorchPredictor
    from alexgui.engine.model.base import AlexNetBase

DEFAULT_OPSET = 18  # the exporter's native opset: no conversion step, and TensorRT 8.6+ reads it
MIN_OPSET = 18
MAX_OPSET = 24  # the newest ai.onnx opset checked to export and run with this onnxruntime

Progress = Callable[[str], None]


class ExportError(AlexguiError):
    """An export that cannot be done: ExportError(path, problem); str() is "PATH: problem"."""


class _LogitsAndFeatures(nn.Module):
    """The exported graph: one forward pass giving both outputs (fc8 reuses fc7's features)."""

    def __init__(self, model: AlexNetBase, fp16: bool) -> None:
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
    # A killed export leaves its temporary (the whole model, 100-250 MB) beside the target; the next
    # export into the folder removes those whose writer no longer runs (store/atomic.py).
    swept = remove_stale_temporaries(out.parent)
    if swept:
        report(f"removed {len(swept)} leftover temporary file(s) of an interrupted write: "
               + ", ".join(p.name for p in swept))
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
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; the user needs the first line
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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__

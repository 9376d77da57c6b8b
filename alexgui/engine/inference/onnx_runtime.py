"""The ONNX Runtime backend of the Predictor interface (the file format is in onnx_format.py).

An alexgui ONNX file takes the network's preprocessed input, float32 (batch, 3, crop, crop) RGB NCHW,
exactly what transforms.Preprocess produces, and returns "logits" (batch, C) and "features"
(batch, 4096, fc7 after ReLU). Preprocessing stays outside the graph on purpose: the paper's ten-crop
test needs every corner crop and its reflection of the image *and* of the mean image, which one
baked-in centre crop could not serve, and keeping it in Python means OnnxPredictor runs the very same
Preprocess code as TorchPredictor. So that the file alone is enough to reproduce predictions, its
metadata_props carry everything the preprocessing needs (see META_* below): the description
Preprocess.describe() writes, plus the statistics tensors (the paper's 256x256 mean image) as
base64-encoded little-endian float32 in "alexgui.stats", and the model's doc_string spells the
recipe out in words.

Provider choice: TensorRT, then CUDA, then CPU ("auto"), each attempt checked with
session.get_providers() because onnxruntime-gpu silently runs on the CPU when the CUDA libraries or
the GPU are missing. Loading a file never runs code from it: no custom-op library is registered, so
a graph that needs one is refused by ONNX Runtime with a message naming the file.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from alexgui.engine.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    mean_over_crops,
)
from alexgui.engine.inference.onnx_format import (
    DEFAULT_CROP,
    DEFAULT_RESIZE,
    FEATURE_DIM,
    FEATURES_NAME,
    FORMAT_VERSION,
    LOGITS_NAME,
    META_ARCH,
    META_CLASS_NAMES,
    META_FINGERPRINT,
    META_FORMAT,
    META_PRECISION,
    META_PREPROCESSING,
    META_SOURCE,
    META_STATS,
    META_WNIDS,
    decode_array,
)
from alexgui.engine.inference.onnx_providers import (
    PROVIDER_NAMES,
    OnnxModelError,
    create_session,
    provider_chain,
    session_problem,
)
from alexgui.engine.inference.predict import Predictor
from alexgui.engine.model.zoo import sha256_file

# ---- the predictor -------------------------------------------------------------------------------


@dataclass
class _Layout:
    """What OnnxPredictor learned about a file: its interface and how to feed it."""

    input_name: str
    input_dtype: np.dtype
    fixed_batch: int | None  # the batch size a graph without a dynamic batch axis insists on
    logits_name: str
    features_name: str | None
    meta: dict[str, str]


class OnnxPredictor(Predictor):
    """An exported AlexNet on ONNX Runtime, with the same preprocessing code as TorchPredictor.

    Attributes beyond Predictor's: provider (the active ONNX Runtime provider), provider_notes (why
    better providers were not used), precision, warnings (assumptions made for a file without alexgui
    metadata; show them to the user), path.
    """

    def __init__(self, path: str | os.PathLike[str], device: str = "auto", threads: int | None = None,
                 cache_dir: Path | None = None) -> None:
        self.path = Path(path)
        _check_file(self.path)
        self.warnings: list[str] = []
        choice = create_session(self.path, device, threads, cache_dir)
        self._session = choice.session
        self.provider = choice.provider
        self.provider_notes = choice.notes
        self.threads = choice.threads
        self._io_binding = self.provider != PROVIDER_NAMES["cpu"]
        self._gpu_id = provider_chain(device)[1]
        self._lock = threading.Lock()
        self._layout = _read_layout(self.path, self._session)
        meta = self._layout.meta
        if META_FORMAT in meta:
            self._init_from_metadata(meta)
        else:
            self._init_with_defaults()
        self._check_input_shape()
        self.feature_dim = self._warm_up()

    # ---- construction helpers -------------------------------------------------------------------

    def _init_from_metadata(self, meta: dict[str, str]) -> None:
        if meta[META_FORMAT] != FORMAT_VERSION:
            raise OnnxModelError(self.path, f"alexgui ONNX format {meta[META_FORMAT]!r} is not supported "
                                            f"(this version reads format {FORMAT_VERSION})")
        class_names = _json_meta(self.path, meta, META_CLASS_NAMES)
        if not isinstance(class_names, list) or not class_names or not all(isinstance(c, str) for c in class_names):
            raise OnnxModelError(self.path, f"metadata {META_CLASS_NAMES} must be a non-empty list of strings")
        wnids = _json_meta(self.path, meta, META_WNIDS) if META_WNIDS in meta else None
        if wnids is not None and (not isinstance(wnids, list) or len(wnids) != len(class_names)):
            raise OnnxModelError(self.path, f"metadata {META_WNIDS} must list one id per class")
        desc = _json_meta(self.path, meta, META_PREPROCESSING)
        stats = _json_meta(self.path, meta, META_STATS) if META_STATS in meta else {}
        if not isinstance(stats, dict):
            raise OnnxModelError(self.path, f"metadata {META_STATS} must be a JSON object")
        try:
            tensors = {name: torch.from_numpy(decode_array(value, f"{META_STATS} {name}")) for name, value in stats.items()}
            self.preprocess = Preprocess.from_description(desc, tensors)
        except ValueError as e:
            raise OnnxModelError(self.path, f"metadata {META_PREPROCESSING}: {e}") from None
        self.class_names = class_names
        self.wnids = wnids
        self.arch = meta.get(META_ARCH, "unknown")
        self.fingerprint = meta.get(META_FINGERPRINT) or sha256_file(self.path)[:16]
        self.source = str(self.path)
        self.exported_from = meta.get(META_SOURCE, "")
        self.precision = meta.get(META_PRECISION, "float32")

    def _init_with_defaults(self) -> None:
        self.preprocess = Preprocess.imagenet_mean_std(DEFAULT_CROP, resize=DEFAULT_RESIZE)
        self.class_names = []  # numbered once the warm-up run shows how many classes there are
        self.wnids = None
        self.arch = "unknown"
        self.fingerprint = sha256_file(self.path)[:16]
        self.source = str(self.path)
        self.exported_from = ""
        self.precision = "float16" if self._layout.input_dtype == np.float16 else "float32"
        self.warnings.append(
            f"{self.path}: no alexgui metadata; assuming torchvision's ImageNet preprocessing "
            f"(short side to {DEFAULT_RESIZE}, central {DEFAULT_CROP}x{DEFAULT_CROP} crop, RGB scaled to 0..1, "
            f"mean {list(IMAGENET_MEAN)}, std {list(IMAGENET_STD)}) and numbered class names"
        )

    def _check_input_shape(self) -> None:
        shape = self._session.get_inputs()[0].shape
        c = self.preprocess.crop
        wanted = f"(batch, 3, {c}, {c})"
        if len(shape) != 4:
            raise OnnxModelError(self.path, f"input {self._layout.input_name!r} has shape {_shape_text(shape)}; "
                                            f"alexgui feeds images as {wanted}")
        if shape[1] != 3 and shape[3] == 3:
            raise OnnxModelError(self.path, f"input {self._layout.input_name!r} has shape {_shape_text(shape)}, "
                                            f"channels last; alexgui feeds channels first, {wanted}")
        for axis, expected in ((1, 3), (2, c), (3, c)):
            if isinstance(shape[axis], int) and shape[axis] != expected:
                raise OnnxModelError(self.path, f"input {self._layout.input_name!r} has shape {_shape_text(shape)}, "
                                                f"but the preprocessing makes {wanted}")

    def _warm_up(self) -> int:
        # One small run checks that the graph takes our input and tells the output widths; on a GPU
        # it also pays the one-off kernel selection and allocation before the user waits on it.
        c = self.preprocess.crop
        logits, features = self._run(np.zeros((1, 3, c, c), np.float32))
        if logits.ndim != 2:
            raise OnnxModelError(self.path, f"output {self._layout.logits_name!r} has shape {logits.shape}; "
                                            "expected (batch, classes)")
        n = logits.shape[1]
        if not self.class_names:
            self.class_names = [f"class {i}" for i in range(n)]
        elif len(self.class_names) != n:
            raise OnnxModelError(self.path, f"the metadata names {len(self.class_names)} classes but the model "
                                            f"outputs {n} logits")
        if features is None:
            self.warnings.append(f"{self.path}: no fc7 features output; retrieval (nearest neighbours) is unavailable")
            return 0
        return int(features.shape[1])

    # ---- inference ------------------------------------------------------------------------------

    def predict_u8(self, u8: np.ndarray | torch.Tensor, ten_crop: bool = False) -> tuple[np.ndarray, np.ndarray]:
        batch = torch.as_tensor(u8)
        if batch.ndim == 3:
            batch = batch.unsqueeze(0)
        with torch.inference_mode():
            x, crops = self.preprocess.test_batch(batch, ten_crop)
        logits, features = self._run(x.numpy())
        probs = torch.softmax(torch.from_numpy(logits).float(), dim=1).numpy()
        feats = features if features is not None else np.zeros((logits.shape[0], 0), np.float32)
        # The paper averages the softmax over the ten patches; the features likewise (as TorchPredictor).
        probs, feats = mean_over_crops(probs, crops), mean_over_crops(feats, crops)
        return probs.astype(np.float32), feats.astype(np.float32)

    def run_preprocessed(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The graph on an already preprocessed float32 (B, 3, crop, crop) batch -> (logits, features)."""
        return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        layout = self._layout
        x = x.astype(layout.input_dtype, copy=False)
        names = [layout.logits_name] + ([layout.features_name] if layout.features_name else [])
        step = layout.fixed_batch or x.shape[0]
        parts: list[list[np.ndarray]] = []
        with self._lock:
            for start in range(0, x.shape[0], max(step, 1)):
                chunk = x[start : start + step]
                real = chunk.shape[0]
                if layout.fixed_batch and real < layout.fixed_batch:
                    pad = np.zeros((layout.fixed_batch - real, *chunk.shape[1:]), chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                outs = self._run_once(names, np.ascontiguousarray(chunk))
                parts.append([o[:real] for o in outs])
        joined = [np.concatenate([p[i] for p in parts]).astype(np.float32, copy=False) for i in range(len(names))]
        return joined[0], (joined[1] if len(joined) > 1 else None)

    def _run_once(self, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        try:
            if self._io_binding:
                # The input is copied to the GPU once and the outputs stay there until the copy
                # back, instead of ONNX Runtime staging both through its own CPU buffers.
                binding = self._session.io_binding()
                binding.bind_cpu_input(self._layout.input_name, x)
                for name in names:
                    binding.bind_output(name, "cuda", self._gpu_id)
                self._session.run_with_iobinding(binding)
                return list(binding.copy_outputs_to_cpu())
            return list(self._session.run(names, {self._layout.input_name: x}))
        except Exception as e:  # noqa: BLE001 - onnxruntime's pybind error types
            raise OnnxModelError(self.path, f"inference failed ({session_problem(e)})") from None

    def describe(self) -> dict[str, Any]:
        d = {
            **super().describe(),
            "backend": "onnxruntime",
            "provider": self.provider,
            "provider_notes": list(self.provider_notes),
            "precision": self.precision,
            "threads": self.threads,
            "io_binding": self._io_binding,
            "onnxruntime_version": ort.__version__,
            "preprocessing": self.preprocess.describe(),
        }
        if self.exported_from:
            d["exported_from"] = self.exported_from
        if self.warnings:
            d["warnings"] = list(self.warnings)
        return d

def load_onnx_predictor(path: Path, device: str = "cpu") -> OnnxPredictor:
    """sources.load_predictor's entry point for .onnx files. device: cpu, auto, cuda[:N], tensorrt[:N]."""
    return OnnxPredictor(path, device)


# ---- helpers -------------------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise OnnxModelError(path, "is a folder, not an ONNX file")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise OnnxModelError(path, "no such file") from None
    except OSError as e:
        raise OnnxModelError(path, f"cannot read ({e.strerror or e})") from None
    if size == 0:
        raise OnnxModelError(path, "empty file (0 bytes)")


def _read_layout(path: Path, session: ort.InferenceSession) -> _Layout:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs)
        raise OnnxModelError(path, f"the model has {len(inputs)} inputs ({names}); alexgui models take one image batch")
    dtypes: dict[str, np.dtype] = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16)}
    if inputs[0].type not in dtypes:
        raise OnnxModelError(path, f"input {inputs[0].name!r} is {inputs[0].type}; expected float or float16 images")
    outputs = [o.name for o in session.get_outputs()]
    logits = LOGITS_NAME if LOGITS_NAME in outputs else outputs[0]
    features = FEATURES_NAME if FEATURES_NAME in outputs else None
    if features is None and len(outputs) > 1:
        shape = session.get_outputs()[1].shape
        if len(shape) == 2 and shape[1] == FEATURE_DIM:
            features = outputs[1]
    batch = inputs[0].shape[0] if inputs[0].shape else None
    fixed = batch if isinstance(batch, int) and batch > 0 else None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    return _Layout(inputs[0].name, dtypes[inputs[0].type], fixed, logits, features, meta)


def _json_meta(path: Path, meta: dict[str, str], key: str) -> Any:
    if key not in meta:
        raise OnnxModelError(path, f"the alexgui metadata lacks {key}")
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise OnnxModelError(path, f"metadata {key} is not valid JSON ({e})") from None


def _shape_text(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) if d is not None else "?" for d in shape) + ")"

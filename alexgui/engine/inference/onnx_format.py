"""The alexgui ONNX file format: tensor names, the metadata keys an export carries, and how the
preprocessing statistics are encoded in them. Shared by the exporter (which writes it) and the runtime
(which reads it); neither imports the other.

An alexgui ONNX file takes the network's preprocessed input, float32 (batch, 3, crop, crop) RGB NCHW,
exactly what transforms.Preprocess produces, and returns "logits" (batch, C) and "features"
(batch, 4096, fc7 after ReLU). Its metadata_props carry everything the preprocessing needs (META_*): the
description Preprocess.describe() writes, plus the statistics tensors (the paper's 256x256 mean image)
as base64-encoded little-endian float32 in "alexgui.stats".
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch

from alexgui.engine.data.transforms import Preprocess

FORMAT_VERSION = "1"
INPUT_NAME = "input"
LOGITS_NAME = "logits"
FEATURES_NAME = "features"
FEATURE_DIM = 4096

META_FORMAT = "alexgui.format"  # FORMAT_VERSION; its presence marks an alexgui export
META_VERSION = "alexgui.alexgui_version"
META_ARCH = "alexgui.arch"  # "paper" | "torchvision"
META_CLASS_NAMES = "alexgui.class_names"  # JSON list of str, index = logit index
META_WNIDS = "alexgui.wnids"  # JSON list of ImageNet WordNet ids, when known
META_PREPROCESSING = "alexgui.preprocessing"  # JSON: Preprocess.describe()
META_STATS = "alexgui.stats"  # JSON {"stats.mean_image": encoded array, ...} (see encode_array)
META_DECODE = "alexgui.decode"  # how a file becomes the 256x256 image (imageio.load_256), in words
META_INPUT = "alexgui.input"  # JSON {"name", "shape", "dtype", "layout", "channel_order"}
META_OUTPUTS = "alexgui.outputs"  # JSON {name: description}
META_FINGERPRINT = "alexgui.weights_fingerprint"  # checkpoint.weights_fingerprint of the source weights
META_SOURCE = "alexgui.source"  # the model the file was exported from, for display
META_PRECISION = "alexgui.precision"  # "float32" | "float16" (weights and arithmetic; I/O is float32)

DECODE_DESCRIPTION = (
    "decode to RGB (EXIF orientation applied, transparency composited onto grey (128, 128, 128)), "
    "take the central square of the image and resize it to resize x resize with Lanczos (PIL), "
    "i.e. short side to resize then the central patch"
)

# Used for an ONNX file that lacks alexgui metadata (a model exported by other tools): the
# conventions of torchvision's ImageNet AlexNet, said out loud in OnnxPredictor.warnings.
DEFAULT_RESIZE = 256
DEFAULT_CROP = 224



def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A float array as JSON: dtype, shape and base64 of its little-endian float32 bytes."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return {
        "dtype": "float32",
        "byte_order": "little",
        "shape": list(data.shape),
        "base64": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def decode_array(encoded: Any, what: str) -> np.ndarray:
    """encode_array's inverse; raises ValueError naming `what` when the entry is malformed."""
    if not isinstance(encoded, dict):
        raise ValueError(f"{what}: expected a JSON object")
    shape = encoded.get("shape")
    if encoded.get("dtype") != "float32" or encoded.get("byte_order", "little") != "little":
        raise ValueError(f"{what}: only little-endian float32 is supported, got {encoded.get('dtype')!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"{what}: shape must be a list of non-negative integers, got {shape!r}")
    try:
        raw = base64.b64decode(encoded.get("base64", ""), validate=True)
    except (ValueError, TypeError):
        raise ValueError(f"{what}: the data is not valid base64") from None
    expected = 4 * int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{what}: {len(raw)} bytes of data for shape {tuple(shape)} (expected {expected})")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def stat_tensors(preprocess: Preprocess) -> dict[str, torch.Tensor]:
    """Preprocess.stat_tensors() on the CPU, always with the PCA statistics (ONNX metadata and the export
    cache key have carried them from the start)."""
    tensors = {
        "stats.pca_eigvals": preprocess.pca_eigvals,
        "stats.pca_eigvecs": preprocess.pca_eigvecs,
        **preprocess.stat_tensors(),
    }
    return {name: t.detach().cpu() for name, t in tensors.items()}

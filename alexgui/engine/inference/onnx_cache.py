"""PyTorch models on ONNX Runtime: exported on first use into a cache keyed by what makes one export
differ from another (weights, class names, preprocessing, precision, opset), then reused.

`classify --backend onnx` and the app's fast-inference switch come through here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from alexgui.engine.inference import onnx_export
from alexgui.engine.inference.onnx_export import DEFAULT_OPSET
from alexgui.engine.inference.onnx_format import FORMAT_VERSION, stat_tensors
from alexgui.engine.inference.onnx_providers import gpu_present, provider_chain
from alexgui.engine.inference.onnx_runtime import OnnxPredictor
from alexgui.engine.inference.predict import PredictorError, TorchPredictor, check_model_file
from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.store.atomic import remove_stale_temporaries
from alexgui.paths import cache_dir as default_cache


def exported_predictor(
    predictor: TorchPredictor,
    cache_dir: Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    keep: int = 3,
) -> OnnxPredictor:
    """The same model on ONNX Runtime, exported on first use into a cache keyed by the weights,
    class names, preprocessing and precision (float16 when a GPU will run it). Only the `keep`
    most recently used exports stay in the cache (each is ~230 MB)."""
    folder = (cache_dir or default_cache()) / "onnx"
    fp16 = provider_chain(device)[0][0] != "cpu" and gpu_present()
    path = folder / f"{predictor.arch}-{export_key(predictor, fp16, DEFAULT_OPSET)}.onnx"
    remove_stale_temporaries(folder)
    if path.exists():
        os.utime(path)  # most recently used
    else:
        onnx_export.export_onnx(predictor, path, fp16=fp16, opset=DEFAULT_OPSET, progress=progress)
    _prune(folder, keep, path)
    onnx_predictor = OnnxPredictor(path, device, threads, cache_dir=folder)
    onnx_predictor.exported_from = predictor.source
    return onnx_predictor


def export_key(predictor: TorchPredictor, fp16: bool, opset: int) -> str:
    """What distinguishes one export from another: weights, classes, preprocessing, precision, opset."""
    h = hashlib.sha256()
    stats = {
        k: hashlib.sha256(v.float().contiguous().numpy().tobytes()).hexdigest()
        for k, v in stat_tensors(predictor.preprocess).items()
    }
    h.update(json.dumps([predictor.fingerprint, predictor.class_names, predictor.preprocess.describe(), stats,
                         "float16" if fp16 else "float32", opset, FORMAT_VERSION], sort_keys=True).encode())
    return h.hexdigest()[:16]


def load_onnx_backend(spec: str | os.PathLike[str], device: str = "auto", threads: int | None = None,
                      progress: Callable[[str], None] | None = None) -> OnnxPredictor:
    """`--backend onnx`: an .onnx file as is, any other model spec exported on the fly (cached)."""
    if Path(str(spec)).suffix.lower() == ".onnx":
        path = Path(str(spec)).expanduser()
        if path.exists():
            check_model_file(path)  # a named pipe is refused, not read as an empty file
        return OnnxPredictor(path, device, threads)
    torch_predictor = load_predictor(spec, "cpu")
    if not isinstance(torch_predictor, TorchPredictor):
        raise PredictorError(f"{spec}: cannot be converted to ONNX (not a PyTorch model)")
    return exported_predictor(torch_predictor, device=device, threads=threads, progress=progress)



def _prune(folder: Path, keep: int, current: Path) -> None:
    exports = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in exports[max(keep, 1):]:
        if old != current:
            try:
                old.unlink()
            except OSError:
                pass

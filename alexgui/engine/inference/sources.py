"""Model sources: what a user names as a model, resolved to a Predictor.

- "torchvision" (or its aliases): torchvision's ImageNet AlexNet, from the model zoo;
- a run folder: its best (else last) checkpoint;
- a .safetensors checkpoint; a .pth/.pt/.bin torchvision state dict;
- an .onnx file: the ONNX Runtime backend, imported only when such a file is opened, so that an
  installation without onnxruntime still opens every other kind.
"""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path

from alexgui.engine.inference.predict import (
    Predictor,
    PredictorError,
    Progress,
    TorchPredictor,
    check_model_file,
)
from alexgui.engine.model import zoo
from alexgui.errors import Cancelled

# Backends outside this module, imported only when a file of that kind is opened. Each is
# "module:function" with function(path: Path, device: str) -> Predictor.
BACKENDS: dict[str, str] = {".onnx": "alexgui.engine.inference.onnx_runtime:load_onnx_predictor"}


def load_predictor(
    spec: str | os.PathLike[str],
    device: str = "cpu",
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    allow_download: bool = False,
) -> Predictor:
    """The model a user named (see the module docstring). Raises PredictorError naming the file."""
    text = str(spec)
    if not text.strip():  # Path("") is the current folder, which is not what anyone means by it
        raise PredictorError("no model given (an empty name); give a checkpoint, a run folder, an ONNX file or 'torchvision'")
    if text in zoo.ALIASES:
        try:
            path = zoo.ensure_weights(zoo.default_entry(), allow_download=allow_download, progress=progress, stop=stop)
        except Cancelled:
            raise  # the user stopped the download: not a problem with the model
        except zoo.ZooError as e:
            raise PredictorError(str(e)) from e  # chained: the window offers a download for an OfflineError cause
        return TorchPredictor.from_torchvision_file(path, device)
    path = Path(text).expanduser()
    if not path.exists():
        raise PredictorError(f"{path}: no such file or folder (expected a checkpoint, a run folder, "
                             f"an ONNX file or 'torchvision')")
    if path.is_dir():
        return TorchPredictor.from_run_dir(path, device)
    check_model_file(path)  # before any backend opens it: a named pipe would block it for ever
    suffix = path.suffix.lower()
    if suffix in BACKENDS:
        module_name, _, func = BACKENDS[suffix].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            raise PredictorError(f"{path}: {suffix} models need the {module_name} backend, "
                                 "which this installation does not have") from None
        return getattr(module, func)(path, device)
    if suffix == ".safetensors":
        return TorchPredictor.from_checkpoint(path, device)
    if suffix in (".pth", ".pt", ".bin"):
        return TorchPredictor.from_torchvision_file(path, device)
    raise PredictorError(f"{path}: unknown model file type {suffix or '(no suffix)'}; expected .safetensors, "
                         ".pth, .onnx or a run folder")

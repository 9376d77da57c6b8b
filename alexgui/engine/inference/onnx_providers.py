"""ONNX Runtime's execution providers: which to try for a device string (TensorRT, then CUDA, then the
CPU), and an InferenceSession on the best one that really loads. Each attempt is checked with
session.get_providers(), because onnxruntime-gpu silently runs on the CPU when the CUDA libraries or
the GPU are missing; why a better provider was not used is kept in notes for the user. Loading a file
never runs code from it: no custom-op library is registered.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort
import torch

from alexgui.engine.inference.predict import PredictorError

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_GPU_KINDS = ("tensorrt", "cuda")
# ONNX Runtime's default logger severity (0 verbose .. 4 fatal); it has no getter to restore from.
_ORT_DEFAULT_LOG_SEVERITY = 2
_ORT_QUIET = 4


class OnnxModelError(PredictorError):
    """An ONNX file that cannot be used; OnnxModelError(path, problem), str() is "PATH: problem"."""




def provider_chain(device: str) -> tuple[list[str], int]:
    """The providers to try, best first, and the GPU index, for a device string.

    "auto": TensorRT, CUDA, CPU. "cpu": CPU only. "cuda[:N]": CUDA then CPU. "tensorrt[:N]": TensorRT,
    CUDA, CPU.
    """
    text = device.strip().lower()
    kind, _, index = text.partition(":")
    if index and not index.isdigit():
        raise ValueError(f"device {device!r}: the GPU index after ':' must be a number")
    gpu = int(index) if index else 0
    chains = {
        "auto": ["tensorrt", "cuda", "cpu"],
        "cpu": ["cpu"],
        "cuda": ["cuda", "cpu"],
        "tensorrt": ["tensorrt", "cuda", "cpu"],
    }
    if kind not in chains or (kind in ("auto", "cpu") and index):
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda[:N] or tensorrt[:N]")
    return chains[kind], gpu


def gpu_present() -> bool:
    """Whether this machine seems to have an NVIDIA GPU (cheap; used only to skip hopeless attempts)."""
    if torch.cuda.is_available():
        return True
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share a core's arithmetic units)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


@dataclass
class SessionChoice:
    session: ort.InferenceSession
    provider: str  # the provider that runs the graph, e.g. "CPUExecutionProvider"
    notes: list[str] = field(default_factory=list)  # why better providers were not used
    threads: int = 0  # intra-op threads on the CPU (0 = the GPU provider decides)


def create_session(
    path: Path,
    device: str = "auto",
    threads: int | None = None,
    cache_dir: Path | None = None,
) -> SessionChoice:
    """An InferenceSession on the best provider of `device`'s chain that actually loads."""
    chain, gpu = provider_chain(device)
    available = ort.get_available_providers()
    notes: list[str] = []
    for kind in chain:
        name = PROVIDER_NAMES[kind]
        if name not in available:
            notes.append(f"{name} is not part of this onnxruntime build")
            continue
        if kind == "cpu":
            n = threads or physical_cores()
            return SessionChoice(_new_session(path, _cpu_options(n), [name], None), name, notes, n)
        if device.strip().lower() == "auto" and not gpu_present():
            notes.append(f"{name} skipped: no NVIDIA GPU found")
            continue
        session, problem = _try_gpu_session(path, kind, gpu, cache_dir)
        if session is not None:
            return SessionChoice(session, name, notes, 0)
        notes.append(f"{name} unavailable: {problem}")
    raise OnnxModelError(path, "no execution provider could be started (" + "; ".join(notes) + ")")


def _cpu_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # AlexNet is one chain of layers: nothing runs in parallel across nodes, so one inter-op thread
    # and all the cores inside each node (GEMM/conv) is the right split.
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


def _gpu_options() -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def _try_gpu_session(path: Path, kind: str, gpu: int, cache_dir: Path | None) -> tuple[ort.InferenceSession | None, str]:
    cuda_options = {"device_id": str(gpu)}
    if kind == "tensorrt":
        trt_options: dict[str, str] = {"device_id": str(gpu), "trt_fp16_enable": "True"}
        if cache_dir is not None:
            # Building TensorRT engines takes minutes; keep them between runs.
            engines = cache_dir / "tensorrt"
            engines.mkdir(parents=True, exist_ok=True)
            trt_options.update({"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(engines)})
        providers = [PROVIDER_NAMES["tensorrt"], PROVIDER_NAMES["cuda"], PROVIDER_NAMES["cpu"]]
        options: list[dict[str, str]] | None = [trt_options, cuda_options, {}]
    else:
        providers = [PROVIDER_NAMES["cuda"], PROVIDER_NAMES["cpu"]]
        options = [cuda_options, {}]
    # A missing CUDA library is logged by ONNX Runtime's C++ logger straight to stderr; we report
    # the outcome ourselves in the notes, so quieten it for the attempt.
    ort.set_default_logger_severity(_ORT_QUIET)
    try:
        session = _new_session(path, _gpu_options(), providers, options)
    except OnnxModelError as e:
        return None, e.problem
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_LOG_SEVERITY)
    active = session.get_providers()
    if active and active[0] == PROVIDER_NAMES[kind]:
        return session, ""
    # onnxruntime-gpu lists the GPU providers even when their libraries or the GPU are missing, and
    # then quietly registers only the CPU provider.
    return None, "the provider did not load (no usable GPU, or CUDA/cuDNN/TensorRT libraries missing)"


def _new_session(
    path: Path, options: ort.SessionOptions, providers: list[str], provider_options: list[dict[str, str]] | None
) -> ort.InferenceSession:
    try:
        # enable_fallback=0: ONNX Runtime's own fallback print()s to stdout (which would corrupt
        # --json output) and hides which provider failed; we fall back ourselves.
        return ort.InferenceSession(
            str(path), options, providers=providers, provider_options=provider_options, enable_fallback=0
        )
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own pybind types (Fail, InvalidProtobuf, ...)
        raise OnnxModelError(path, session_problem(e)) from None


def session_problem(e: BaseException) -> str:
    name = type(e).__name__
    text = " ".join(str(e).split())
    if "[ONNXRuntimeError] : " in text:
        text = text.split("[ONNXRuntimeError] : ", 1)[1]
    text = re.sub(r"^\d+ : [A-Z_]+ : ", "", text)  # the status code, e.g. "1 : FAIL : "
    text = re.sub(r"^Load model from .* failed:\s*", "", text)  # the caller names the file already
    # Drop ONNX Runtime's source location and C++ signature ("/onnxruntime_src/...cc:729 void f(...) ").
    text = re.sub(r"/\S+\.(?:cc|h|cpp):\d+ (?:[^()]*\([^()]*\)\s*)?", "", text)
    if name == "InvalidProtobuf" or "Protobuf parsing failed" in text:
        return "not a valid ONNX model (it could not be parsed: truncated, corrupt or not ONNX)"
    if name == "NoSuchFile":
        return "no such file"
    if "is not a registered function/op" in text or "No Op registered" in text:
        return f"the model uses an operator this ONNX Runtime does not have (custom ops are never loaded): {text[:300]}"
    return f"ONNX Runtime cannot load it ({name}: {text[:300]})"

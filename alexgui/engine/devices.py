"""The one device vocabulary: what a user may type or pick as a device, checked once, with one message.

    auto             the best this machine has: a CUDA GPU, else Apple's GPU (mps), else the CPU
    cpu              the CPU
    cuda, cuda:N     a CUDA GPU ("cuda" is the current one)
    mps              Apple's GPU, where this torch offers it
    A,B              two of the above, one tower each: the paper's model parallelism
                     (cuda:0,cuda:1 as in the paper; cpu,cpu tests the same path on any machine)

The command line (`--device`), the app's device box and the trainer all go through here: parse_devices
turns a string into torch devices or raises DeviceError saying why, and device_choices lists what this
machine offers, the paper's two-GPU split included when two GPUs are present.

"auto" is resolved where a run starts, not where it is configured: a run's config.toml keeps "auto", so
a run resumed on another machine picks that machine's best device, and the resolved device is what the
run's log (RunStarted) and the command's first line name. The app's box lists concrete devices and
preselects best_choice(), the same pick. Apple's GPU is below CUDA: the paper's network runs there with
this torch's MPS kernels; an operation MPS lacks stops the run with torch's NotImplementedError, which
names the operation and PYTORCH_ENABLE_MPS_FALLBACK=1 (set before Python starts: torch reads it once,
on import) or --device cpu as the ways on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from alexgui.errors import AlexguiError

TWO_TOWERS_LABEL = "Two GPUs, one tower each (GPU 0 + GPU 1, as in the paper)"
AUTO = "auto"
_NAMES = "auto, cpu, cuda, cuda:N" + (", mps" if hasattr(torch.backends, "mps") else "")


class DeviceError(AlexguiError, ValueError):
    """A device string that cannot be used on this machine; the message says which and why."""


class DeviceChoice(NamedTuple):
    spec: str  # what parse_devices takes, and what --device takes
    label: str  # what the app shows


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def parse_devices(spec: str) -> list[torch.device]:
    """One device, or two joined by a comma (one tower each). DeviceError for unknown names, more
    than two devices, and devices this machine lacks."""
    parts = [p.strip() for p in str(spec).split(",")]
    if not 1 <= len(parts) <= 2 or any(not p for p in parts):
        raise DeviceError(f"device {spec!r}: give one device ({_NAMES}) or two joined by a comma (cuda:0,cuda:1)")
    if len(parts) == 2 and AUTO in (p.lower() for p in parts):
        raise DeviceError(f"device {spec!r}: 'auto' picks one device; name both devices for one tower each (cuda:0,cuda:1)")
    if parts[0].lower() == AUTO:
        return [best_device()]
    return [_one_device(p, spec) for p in parts]


def parse_device(spec: str) -> torch.device:
    """Exactly one device (inference, evaluation): two towers make sense only for training."""
    devices = parse_devices(spec)
    if len(devices) != 1:
        raise DeviceError(f"device {spec!r}: give one device here ({_NAMES}); two devices are for training")
    return devices[0]


def _one_device(name: str, spec: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r} in {spec!r}: use {_NAMES}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but this machine has no usable CUDA GPU; use --device cpu")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not mps_available():
            raise DeviceError(f"device {spec!r} asked for, but this torch has no usable Apple GPU (mps); use --device cpu")
        return device
    if device.type != "cpu":
        raise DeviceError(f"unsupported device {name!r} in {spec!r}: use {_NAMES}")
    return device


def best_device(distributed: bool = False) -> torch.device:
    """What "auto" means on this machine: the current CUDA GPU, else Apple's GPU, else the CPU. Under
    torchrun (`distributed`) MPS is passed over: its processes cannot share gradients (no NCCL or gloo
    on MPS tensors). A broken CUDA installation counts as none, as in device_choices."""
    try:
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return torch.device("cuda", torch.cuda.current_device())
    except Exception:  # noqa: BLE001 - a broken driver means no usable GPU, not a failed command
        pass
    if not distributed and mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_spec(spec: str, distributed: bool = False) -> str:
    """`spec` with "auto" replaced by the device it picks ("cuda", not "cuda:N", under torchrun, where
    "cuda" means each process's own GPU); any other spec unchanged."""
    if str(spec).strip().lower() != AUTO:
        return spec
    device = best_device(distributed)
    return "cuda" if distributed and device.type == "cuda" else str(device)


def describe_auto(spec: str, distributed: bool = False) -> str:
    """One line for a command's start: which device "auto" picked and why; "" for any other spec."""
    if str(spec).strip().lower() != AUTO:
        return ""
    device = best_device(distributed)
    if device.type == "cuda":
        try:
            name = torch.cuda.get_device_name(device.index)
        except Exception:  # noqa: BLE001 - the name is only for show
            name = "CUDA GPU"
        return f"device auto: {resolve_spec(spec, distributed)} ({name})"
    if device.type == "mps":
        return "device auto: mps (Apple GPU; no CUDA GPU found)"
    return "device auto: cpu (no CUDA or Apple GPU found)"


def best_choice(choices: Sequence[tuple[str, str]]) -> str:
    """The spec among `choices` (device_choices' pairs, or a box's) that "auto" would pick: the first
    single CUDA GPU, else mps, else cpu (else the first offered). The two-tower split is never the
    default: it is the paper's layout, chosen on purpose, and one GPU trains the same model faster."""
    specs = [spec for spec, _ in choices]
    for wanted in ("cuda", "mps", "cpu"):
        for spec in specs:
            if "," not in spec and spec.split(":")[0] == wanted:
                return spec
    return specs[0] if specs else "cpu"


def device_choices() -> list[DeviceChoice]:
    """Each way this machine can train, best last: the CPU, each GPU, and with two or more CUDA GPUs
    the paper's "two GPUs, one tower each". A broken CUDA installation offers the CPU alone."""
    choices = [DeviceChoice("cpu", "CPU")]
    try:
        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            for i in range(count):
                choices.append(DeviceChoice(f"cuda:{i}", f"GPU {i}: {torch.cuda.get_device_name(i)}"))
            if count >= 2:
                choices.append(DeviceChoice("cuda:0,cuda:1", TWO_TOWERS_LABEL))
        if mps_available():
            choices.append(DeviceChoice("mps", "Apple GPU (mps)"))
    except Exception:  # noqa: BLE001 - a broken driver must not keep the window or the command from starting
        pass
    return choices


def describe_devices(devices: Sequence[torch.device]) -> str:
    """The device string for a list of devices: "cpu", "cuda:0,cuda:1"."""
    return ",".join(str(d) for d in devices)

"""Checks of the subcommands' arguments, made as argparse reads them (`type=`), so that a bad value stops a
command before any work, with one line that names the argument and what it accepts, and exit status 2:

    alexgui index: argument --batch-size: 0 is out of range; give an integer from 1 to 1024

Devices go through the one device vocabulary (alexgui.engine.devices), imported only when a --device
is given so that `alexgui --help` stays quick. A check that needs two arguments at once (classify's
--device means a torch device or an ONNX Runtime one, depending on --backend) raises ArgumentProblem
from the command's run() before it loads anything; the command line prints it the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alexgui.config import Range
from alexgui.errors import AlexguiError

T = TypeVar("T", int, float)


class ArgumentProblem(AlexguiError):
    """An argument found wrong by a command's own check (not argparse's); str() starts "argument --NAME: "."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"argument {flag}: {problem}")


def int_in_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high` (both included)."""
    return _ranged(int, "an integer", Range(low, high), integer=True)


def number_in_range(accepted: Range) -> Callable[[str], float]:
    """An argparse type: a number (float) within `accepted` (NaN is in no range)."""
    return _ranged(float, "a number", accepted, integer=False)


def _ranged(convert: Callable[[str], T], kind: str, accepted: Range, integer: bool) -> Callable[[str], T]:
    def check(text: str) -> T:
        try:
            value = convert(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}; give {accepted.describe(integer)}") from None
        if value not in accepted:
            raise argparse.ArgumentTypeError(f"{text.strip()} is out of range; give {accepted.describe(integer)}")
        return value

    return check


def existing_folder(text: str) -> str:
    """An argparse type: a folder that exists (returned with ~ expanded)."""
    path = Path(text).expanduser()
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty; give a folder")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path}: no such folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: not a folder")
    return str(path)


def data_folder(text: str) -> str:
    """An argparse type for training data: 'demo' (the built-in generated set) or a folder that exists.
    Also the check of a data folder named in a settings file (train.py), so both say the same."""
    accepted = "give an image folder (a subfolder per class) or 'demo'"
    if text == "demo":
        return text
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must not be empty; {accepted}")
    try:
        return existing_folder(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e}; {accepted}") from None


def devices(text: str) -> str:
    """An argparse type for training: one device, or two joined by a comma (one paper tower each).
    Also the check of a device named in a settings file (train.py)."""
    from alexgui.engine.devices import DeviceError, parse_devices

    try:
        parse_devices(text)
    except DeviceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def one_device(text: str) -> str:
    """An argparse type for inference: exactly one device this machine has."""
    from alexgui.engine.devices import DeviceError, parse_device

    try:
        parse_device(text)
    except DeviceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def preset_name(text: str) -> str:
    """An argparse type: a training preset's name (alexgui/presets.py) or an alias, as the preset's name."""
    from alexgui.presets import ALIASES, PRESETS, preset_named

    preset = preset_named(text)
    if preset is None:
        names = ", ".join([p.name for p in PRESETS] + list(ALIASES))
        raise argparse.ArgumentTypeError(f"{text!r} is not a preset; give one of {names}")
    return preset.name


def onnx_opset(text: str) -> int:
    """An argparse type: an ONNX opset the exporter writes."""
    from alexgui.engine.inference.onnx_export import MAX_OPSET, MIN_OPSET

    return int_in_range(MIN_OPSET, MAX_OPSET)(text)


def inference_device(spec: str | None, onnx: bool) -> str:
    """classify's --device for its backend: a torch device (default auto: the best this machine has), or
    for ONNX Runtime auto (default), cpu, cuda[:N] or tensorrt[:N]. ArgumentProblem when it is malformed, or names a GPU
    this machine does not have (ONNX Runtime would quietly fall back to the CPU)."""
    if not onnx:
        if spec is None:
            return "auto"
        try:
            return one_device(spec)
        except argparse.ArgumentTypeError as e:
            raise ArgumentProblem("--device", str(e)) from None
    if spec is None:
        return "auto"
    import torch

    from alexgui.engine.inference.onnx_providers import gpu_present, provider_chain

    try:
        chain, gpu = provider_chain(spec)
    except ValueError as e:
        raise ArgumentProblem("--device", f"{e} (the ONNX backend's devices)") from None
    if spec.strip().lower() == "auto" or chain == ["cpu"]:
        return spec
    # Asked for a GPU by name: refuse one that is not there rather than run on the CPU unasked.
    if not gpu_present():
        raise ArgumentProblem("--device", f"device {spec!r} asked for, but this machine has no NVIDIA GPU; "
                                          "use --device cpu or auto")
    if torch.cuda.is_available() and gpu >= torch.cuda.device_count():
        raise ArgumentProblem("--device", f"device {spec!r} asked for, but only {torch.cuda.device_count()} "
                                          "CUDA GPU(s) exist")
    return spec

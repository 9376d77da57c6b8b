"""Arithmetic settings shared by training and evaluation: bf16 autocast and the channels-last layout.

bf16 autocast runs on CUDA, and on CPUs with bf16 instructions: x86's AVX512-BF16 or AMX-BF16, or ARM's
BF16 extension (torch.cpu.get_capabilities()). Elsewhere (a CPU without them, Apple's mps) `--bf16`
trains in fp32, and the run's start says so in one line (`precision_note`): not refused, because a
setting or a preset that asks for bf16 should run on every machine, and on a CPU without the
instructions bf16 is emulated, which is slower than fp32 and gains nothing. Weights, gradients and the
optimizer stay fp32 in every case; autocast only computes the convolutions and matrix products in bf16.

The app turns bf16 on by default for CPU training on a CPU with the instructions (`bf16_by_default`):
measured there (benchmarks/README.md, bench_cpu_bf16.py) it is faster and its validation error after the
same steps is within the spread between seeds. On CUDA it stays the user's choice: not measured here.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from alexgui.engine.devices import resolve_spec


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (asked once; torch's own CPU feature query)."""
    query = getattr(torch.cpu, "get_capabilities", None)
    if query is None:  # an older torch than the tested one: assume not, fp32 is always right
        return False
    caps = query()
    # x86: avx512_bf16 (Cooper Lake, Zen 4 and later) or AMX (Sapphire Rapids and later); ARM: bf16.
    return any(bool(caps.get(name, False)) for name in ("avx512_bf16", "amx_bf16", "bf16"))


def device_kind(spec: str) -> str:
    """"cpu", "cuda" or "mps" for a device box's value ("auto" resolved; the two-tower split is CUDA)."""
    return resolve_spec(spec).split(",")[0].strip().split(":")[0].lower()


def bf16_available(spec: str) -> bool:
    """Whether training on `spec` ("cpu", "cuda:N", "cuda:0,cuda:1", "mps", "auto") with bf16 asked for
    gets bf16 autocast: CUDA always, the CPU with bf16 instructions, nothing else."""
    kind = device_kind(spec)
    return kind == "cuda" or (kind == "cpu" and cpu_has_bf16())


def bf16_by_default(spec: str) -> bool:
    """Whether a new run on `spec` starts with bf16 on in the app: CPU training on a CPU with bf16
    instructions, where it was measured faster and matching fp32 (the module's docstring)."""
    return device_kind(spec) == "cpu" and cpu_has_bf16()


def bf16_active(device: torch.device, bf16: bool) -> bool:
    """Whether asking for bf16 on `device` gets bf16 autocast."""
    if not bf16:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_bf16()


def precision_note(device: torch.device, bf16: bool) -> str:
    """The run's arithmetic, for its first line: '' for plain fp32, else what bf16 turned into."""
    if not bf16:
        return ""
    if bf16_active(device, bf16):
        return "bf16 autocast"
    if device.type == "cpu":
        return "fp32: this CPU has no bf16 instructions, so --bf16 is not used"
    return f"fp32: bf16 autocast is not used on {device.type}"


def autocast(device: torch.device, bf16: bool) -> Any:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16_active(device, bf16))


def memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

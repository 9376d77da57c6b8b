"""Arithmetic settings shared by training and evaluation: bf16 autocast and the channels-last layout."""

from __future__ import annotations

from typing import Any

import torch


def autocast(device: torch.device, bf16: bool) -> Any:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

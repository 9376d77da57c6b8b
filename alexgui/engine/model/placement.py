"""Where a model runs: one device, or the paper's two towers on two devices (model parallelism).

The paper trained on two GTX 580s, one tower each; the towers exchange activations only where the
paper connects them (into conv3, fc6, fc7 and fc8). `place_model(model, "cuda:0,cuda:1")` puts tower 0
and fc8 (so also the loss) on the first device and tower 1 on the second. Any two devices work,
including "cpu,cpu" and "cuda:0,cuda:0" (engine/devices.py parses them), so the two-tower path is testable on any
machine: with two
slots the towers always get their own copy of every cross-tower input, whether or not the devices
differ, exactly as they would on two GPUs.

Overlap: no extra CUDA streams. CUDA launches are asynchronous, and the placed forward issues tower
0's stage and then tower 1's stage before anything waits on the host (no .item(), no event
synchronisation inside the forward), so each GPU works through its own queue while the other works
through its; cross-device copies are ordered by PyTorch against both devices' current streams. The
autograd engine runs one thread per CUDA device, so the backward passes of the towers overlap too.

Each placed forward records, in `model.placement.stats`, the forward time of each tower's stages
(CUDA events on the tower's device; wall clock on CPU) and the bytes passed between the towers
(activations, plus their gradients on the way back when training). The trainer reads and resets them
once per step; with two distinct GPUs these are the bytes that crossed the interconnect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from alexgui.engine.devices import DeviceError, describe_devices, parse_devices
from alexgui.engine.model.base import AlexNetBase
from alexgui.engine.model.paper import PaperAlexNet, Tower, TowerExchange


class PlacementError(DeviceError):
    """A placement that cannot be used (two devices for a single-tower model, three devices)."""


# -- placing a model ----------------------------------------------------------------------------


_MAX_PENDING_EVENTS = 512


@dataclass
class TowerStats:
    """Per-tower forward time and the bytes passed between the towers, since the last take()."""

    towers: int = 2
    _cpu_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0])  # CUDA timings folded in too
    _cuda_events: list[list[tuple[Any, Any]]] = field(default_factory=lambda: [[], []])
    cross_bytes: int = 0

    def take(self) -> tuple[list[float], int]:
        """([ms of tower 0, ms of tower 1], bytes) and reset. Waits for the timed GPU work to finish."""
        self._fold_events()
        out = ([s * 1000.0 for s in self._cpu_seconds], self.cross_bytes)
        self._cpu_seconds = [0.0] * self.towers
        self.cross_bytes = 0
        return out

    def _fold_events(self) -> None:
        for k in range(self.towers):
            for start, end in self._cuda_events[k]:
                end.synchronize()
                self._cpu_seconds[k] += start.elapsed_time(end) / 1000.0
            self._cuda_events[k] = []

    def timed(self, tower: int, device: torch.device, fn: Callable[..., Tensor], *args: Any) -> Tensor:
        if device.type == "cuda":
            # Events on the tower's own stream: recording them does not make the host wait.
            stream = torch.cuda.current_stream(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            out = fn(*args)
            end.record(stream)
            self._cuda_events[tower].append((start, end))
            if len(self._cuda_events[tower]) > _MAX_PENDING_EVENTS:  # nobody is taking: keep memory bounded
                self._fold_events()
            return out
        t0 = time.perf_counter()
        out = fn(*args)
        self._cpu_seconds[tower] += time.perf_counter() - t0
        return out


class TwoTowerPlacement(TowerExchange):
    """The two towers on their own devices: PaperAlexNet's placement strategy after place_model.

    Each stage is issued for tower 0 then tower 1 before anything waits, each tower gets its own copy
    of every cross-tower input (also when both devices are the same, as on two GPUs), and `stats`
    counts the forward time of each tower and the bytes that pass between them."""

    def __init__(self, devices: tuple[torch.device, torch.device]) -> None:
        self.placed_on = devices
        self.stats = TowerStats()

    def devices(self, model: PaperAlexNet) -> tuple[torch.device, torch.device]:
        return self.placed_on

    def inputs(self, x: Tensor, d0: torch.device, d1: torch.device) -> tuple[Tensor, Tensor]:
        x1 = x.to(d1, non_blocking=True)  # issued first, so tower 1's copy runs while tower 0 starts
        if x1.data_ptr() != x.data_ptr():
            self.stats.cross_bytes += x.nelement() * x.element_size()
        return x.to(d0, non_blocking=True), x1

    def run(self, tower: int, device: torch.device, stage: Callable[..., Tensor], *args: Any) -> Tensor:
        return self.stats.timed(tower, device, stage, *args)

    def exchange(self, h0: Tensor, h1: Tensor, d0: torch.device, d1: torch.device, slots: int = 2) -> list[Tensor]:
        out = []
        for k, device in enumerate((d0, d1)[:slots]):
            other = h1 if k == 0 else h0
            # Forward sends the other tower's activation; backward sends its gradient back.
            self.stats.cross_bytes += other.nelement() * other.element_size() * (2 if other.requires_grad else 1)
            out.append(torch.cat([h0.to(device, non_blocking=True), h1.to(device, non_blocking=True)], dim=1))
        return out


def place_model(model: AlexNetBase, devices: str | Sequence[torch.device]) -> AlexNetBase:
    """Move `model` onto one device, or its two towers onto two (paper model only); returns it.

    Parameter names do not change, so a checkpoint written under one placement loads under another.
    """
    if isinstance(devices, str):
        devices = parse_devices(devices)
    devices = [torch.device(d) for d in devices]
    if len(devices) == 1:
        model.to(devices[0])
        if isinstance(model, PaperAlexNet):
            model.placement = TowerExchange()  # back on one device: the towers share it again
        return model
    if len(devices) != 2:
        raise PlacementError(f"a model runs on one device or two, not {len(devices)}")
    if not isinstance(model, PaperAlexNet):
        raise PlacementError(
            f"two devices ({describe_devices(devices)}) need the paper's two-tower model; "
            f"the {getattr(model, 'arch', type(model).__name__)} model has a single tower: give one device"
        )
    d0, d1 = devices
    towers: nn.ModuleList = model.towers
    tower0, tower1 = towers
    assert isinstance(tower0, Tower) and isinstance(tower1, Tower)
    tower0.to(d0)
    tower1.to(d1)
    model.fc8.to(d0)
    model.placement = TwoTowerPlacement((d0, d1))
    return model


def take_tower_stats(model: nn.Module) -> tuple[list[float] | None, int | None]:
    """(per-tower forward ms, bytes between towers) since the last call; (None, None) on one device."""
    placement = getattr(model, "placement", None)
    if not isinstance(placement, TwoTowerPlacement):
        return None, None
    return placement.stats.take()


# -- monitoring ---------------------------------------------------------------------------------


def device_stats(devices: Sequence[torch.device | str]) -> list[dict[str, Any]]:
    """One dict per distinct device for a monitor panel: name, memory in use and at peak (bytes), and
    utilisation in percent when NVML (pynvml) is installed, else None. CPU entries carry no figures."""
    rows: list[dict[str, Any]] = []
    seen: set[torch.device] = set()
    for raw in devices:
        device = torch.device(raw)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device in seen:
            continue
        seen.add(device)
        if device.type != "cuda":
            rows.append({"device": str(device), "name": "CPU", "memory_allocated": None,
                         "max_memory_allocated": None, "memory_total": None, "utilization": None})  # fmt: skip
            continue
        props = torch.cuda.get_device_properties(device)
        rows.append({
            "device": str(device),
            "name": props.name,
            "memory_allocated": torch.cuda.memory_allocated(device),
            "max_memory_allocated": torch.cuda.max_memory_allocated(device),
            "memory_total": props.total_memory,
            "utilization": _utilization(device),
        })
    return rows


def _utilization(device: torch.device) -> float | None:
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001 - needs pynvml (or amdsmi); the monitor shows "n/a" without it
        return None

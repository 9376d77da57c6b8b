"""What every section gets from the runner: the device, the sizes of this run (GPU or CPU dry run),
its share of the time budget, and its entry in the report, which is written out after each figure."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.machine import cpu_name


class BudgetExceeded(RuntimeError):
    """A section passed its hard deadline; raised between measurements so the suite can go on."""


class CheckFailed(RuntimeError):
    """A correctness check of a section did not hold (its figures are kept in the report)."""


@dataclass(frozen=True)
class Sizes:
    """How much work a measurement does. GPU: the real sizes; DRY: the smallest that runs every path."""

    crop: int  # training and test crop (224 is the paper's; 63 is the smallest the network takes)
    resize: int  # short side and central patch the images are cached at
    classes: int  # classes of the synthetic-data models (fc8 width)
    train_batches: tuple[int, ...]  # throughput section
    warmup: int  # untimed steps before timing (cuDNN autotuning, allocator, compilation)
    rounds: int  # A B rounds; medians over them
    min_steps: int  # timed steps per segment, at least ...
    max_steps: int  # ... and at most; in between as the budget allows
    segment_s: float  # aim for timed segments this long
    real_batch: int  # realdata section (engine trainer)
    tower_check_batch: int  # towers section: equality check ...
    tower_batch: int  # ... and speed
    infer_batches: tuple[int, ...]
    infer_rounds: int  # at most; fewer when the budget is short (at least 3)
    recipe_batch: int
    recipe_epochs: int  # the schedule's length (the paper: 90)
    exp_batch: int
    exp_max_epochs: int  # more epochs than this go into more seeds instead
    exp_min_seeds: int  # 2 on the GPU, so that every effect comes with its spread; 1 in the dry run
    exp_max_seeds: int
    eval_reserve_s: float  # kept free at the end of the recipe for the final evaluation
    compile_backend: str  # torch.compile backend: "inductor" on the GPU, "eager" (no code generation) dry
    bf16: bool  # bf16 autocast where asked; off in the dry run (bf16 on this CPU is 5-10x slower than fp32)
    compile_estimate_s: float  # what compiling both models at one batch size may take


GPU = Sizes(crop=224, resize=256, classes=1000, train_batches=(128, 256), warmup=5, rounds=3, min_steps=5,
            max_steps=200, segment_s=0.3, real_batch=256, tower_check_batch=8, tower_batch=256,
            infer_batches=(1, 32, 128), infer_rounds=9, recipe_batch=128, recipe_epochs=90, exp_batch=128,
            exp_max_epochs=30, exp_min_seeds=2, exp_max_seeds=3, eval_reserve_s=20.0,
            compile_backend="inductor", bf16=True, compile_estimate_s=60.0)  # fmt: skip
# 64 and 73 keep the paper's 224:256 margin for random crops; batch 20 makes one step per epoch of the
# generated set (2 images x 10 classes), so that each experiment run costs one step and one validation.
# A CPU step of this net costs ~0.5 s whatever the crop (fc6/fc7 hold 54M of its 61M weights) and
# every engine run ends with ~0.5 GB checkpoints (last and best), so the dry run keeps both down: one
# batch size, one step per segment, one seed per experiment variant, a one-epoch recipe.
DRY = Sizes(crop=64, resize=73, classes=10, train_batches=(2,), warmup=1, rounds=2, min_steps=1,
            max_steps=1, segment_s=0.0, real_batch=4, tower_check_batch=2, tower_batch=2,
            infer_batches=(1, 2, 4), infer_rounds=3, recipe_batch=10, recipe_epochs=1, exp_batch=20,
            exp_max_epochs=1, exp_min_seeds=1, exp_max_seeds=1, eval_reserve_s=5.0,
            compile_backend="eager", bf16=False, compile_estimate_s=15.0)  # fmt: skip


def describe_machine(device: torch.device) -> dict[str, Any]:
    """GPU, driver, torch, CUDA, cuDNN, CPU and ONNX Runtime: what every figure depends on."""
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_capability=f"{props.major}.{props.minor}", gpu_multiprocessors=props.multi_processor_count,
                    gpu_count=torch.cuda.device_count(), driver=_driver_version())  # fmt: skip
        info["device_name"] = props.name
    else:
        info["gpu"] = None
        info["device_name"] = f"CPU ({info['cpu']}, {info['torch_threads']} threads)"
    return info


def _driver_version() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


@dataclass
class SectionContext:
    """One section's view of the run. `record` is the section's entry in suite.json."""

    name: str
    device: torch.device
    dry_run: bool
    sizes: Sizes
    data: Path  # image folder with train/ and val/ class folders
    work: Path  # scratch space: run folders, checkpoints, the ONNX file (not returned)
    out: Path  # what comes back: keep it to a few small files
    machine: dict[str, Any]
    budget_s: float
    record: dict[str, Any]
    shared: dict[str, Any]  # figures one section leaves for a later one (the experiments' calibration)
    save: Callable[[], None]  # rewrite suite.json and suite.md now
    hard_factor: float = 1.25  # past budget x this (+ grace), check_time() raises BudgetExceeded
    grace_s: float = 10.0
    started: float = field(default_factory=time.monotonic)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def time_left(self) -> float:
        """Seconds of this section's share that are left (negative once it is spent)."""
        return self.budget_s - self.elapsed()

    def check_time(self, doing: str) -> None:
        """Between measurements: give up (BudgetExceeded) once far past the share."""
        if self.elapsed() > self.budget_s * self.hard_factor + self.grace_s:
            raise BudgetExceeded(f"{self.elapsed():.0f} s of {self.budget_s:.0f} s spent before {doing}")

    def precision(self, wanted: str) -> tuple[str, bool]:
        """(label, bf16 on) for a measurement that asks for `wanted` ("fp32" or "bf16")."""
        if wanted == "bf16" and not self.sizes.bf16:
            return "fp32 (bf16 off in the dry run)", False
        return wanted, wanted == "bf16"

    def ran(self, text: str) -> None:
        """Say what the section ran (steps, epochs, seeds), in words for the report."""
        self.record["ran"].append(text)
        self.save()

    def note(self, text: str) -> None:
        self.record["notes"].append(text)
        self.save()

    def row(self, precision: str, batch: int | None, **figures: Any) -> dict[str, Any]:
        """One row of figures; every row names the device, torch and CUDA, the precision and the batch."""
        row = {"device": self.machine["device_name"], "torch": self.machine["torch"], "cuda": self.machine["cuda"],
               "precision": precision, "batch": batch, **figures}  # fmt: skip
        self.record["rows"].append(row)
        self.save()
        return row

    def add_file(self, path: Path) -> None:
        name = str(path.relative_to(self.out)) if path.is_relative_to(self.out) else str(path)
        if name not in self.record["files"]:
            self.record["files"].append(name)
        self.save()


def share(remaining_s: float, weights: list[float], index: int) -> float:
    """Section `index`'s share of the time that is left: a fixed proportion of what the sections from
    here on are owed, so that time one section saves (or overspends) is shared out among the rest."""
    rest = sum(weights[index:])
    return max(0.0, remaining_s) * weights[index] / rest if rest > 0 else 0.0

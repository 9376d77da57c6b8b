"""One description of the machine a benchmark ran on, for every benchmark's report."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_cpu() -> str:
    """CPU model, core count, and the torch build and thread count when torch is loaded."""
    text = f"{cpu_name()}, {os.cpu_count()} cores"
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        text += f", torch {torch.__version__}, {torch.get_num_threads()} threads"
    return text

"""suite.json (every figure) and suite.md (the same for people), rewritten atomically after each figure.

The Markdown is made from the JSON alone (each section carries its column list), so that
publish.py can rebuild it from a returned suite.json.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

FORMAT = "alexgui-gpu-suite/1"
JSON_NAME = "suite.json"
MD_NAME = "suite.md"
STATUS_OK = "ok"


def write(out: Path, report: dict[str, Any]) -> None:
    """Both files, each through a temporary file and a rename: a reader never sees half a file."""
    _atomic_text(out / JSON_NAME, json.dumps(_finite(report), indent=1, ensure_ascii=False) + "\n")
    _atomic_text(out / MD_NAME, markdown(report))


def _atomic_text(path: Path, text: str) -> None:
    # A temporary name of its own: the watchdog thread may write while the main thread does.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def fmt(value: Any, kind: str) -> str:
    """One table cell. kinds: text, int, num, rate (images/s), ratio, pct, ms, sci, bool."""
    if value is None or value == "":
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    if kind == "bool":
        return "yes" if value else "**no**"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "rate":
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "ms":
        return f"{value:.2f}" if value < 100 else f"{value:,.0f}"
    if kind == "sci":
        return f"{value:.2e}"
    if kind == "num":
        return f"{value:.1f}" if isinstance(value, float) else str(value)
    return str(value).replace("|", "/")


def machine_line(m: dict[str, Any]) -> str:
    if m.get("gpu"):
        gpu = (f"{m['gpu']} ({m.get('gpu_memory_gib')} GiB, compute capability {m.get('gpu_capability')}, "
               f"{m.get('gpu_multiprocessors')} SMs; driver {m.get('driver') or 'unknown'})")  # fmt: skip
    else:
        gpu = "no GPU (CPU only)"
    return (f"{gpu}; torch {m['torch']}, CUDA {m.get('cuda') or 'none'}, cuDNN {m.get('cudnn') or 'none'}; "
            f"{m['cpu']}, {m['cpu_cores']} cores; onnxruntime {m.get('onnxruntime') or 'absent'} "
            f"({', '.join(m.get('onnxruntime_providers') or [])}); Python {m['python']}")  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    data = report.get("data") or {}
    total = report.get("seconds")
    lines = [
        f"# GPU suite{' (DRY RUN on the CPU: toy sizes, not results)' if report['dry_run'] else ''}",
        "",
        f"- machine: {machine_line(report['machine'])}",
        f"- run: {report['started']}, `--minutes {report['minutes']:g}` ({report['minutes'] * 60:.0f} s budget), "
        f"{f'{total:.0f} s in all' if total is not None else 'unfinished (killed?)'}; device {report['machine']['device']}",
        f"- data: {data.get('path', '?')} ({data.get('classes', '?')} classes, {data.get('train_images', '?')} "
        f"training and {data.get('val_images', '?')} validation images{', generated' if data.get('generated') else ''})",
        "",
        "| section | status | seconds | budget s |",
        "| --- | --- | --- | --- |",
    ]
    for s in report["sections"]:
        secs = f"{s['seconds']:.0f}" if s.get("seconds") is not None else "—"
        lines.append(f"| {s['name']} | {fmt(s['status'], 'text')} | {secs} | {s['budget_s']:.0f} |")
    for i, s in enumerate(report["sections"], 1):
        lines += ["", f"## {i}. {s['title']}", "", f"Status: **{s['status']}**"]
        for text in s["ran"]:
            lines += ["", f"Ran: {text}"]
        rows = s["rows"]
        if rows:
            cols = [c for c in s["columns"] if any(r.get(c[0]) not in (None, "") for r in rows)]
            lines += ["", "| " + " | ".join(h for _, h, _ in cols) + " |", "|" + " --- |" * len(cols)]
            lines += ["| " + " | ".join(fmt(r.get(k), kind) for k, _, kind in cols) + " |" for r in rows]
        if s.get("figures"):
            lines += [""] + [f"- {k}: {_plain(v)}" for k, v in s["figures"].items()]
        if s["notes"]:
            lines += ["", "Notes:"] + [f"- {n}" for n in s["notes"]]
        for f in s["files"]:
            lines += ["", f"![{f}]({f})" if f.endswith(".png") else f"File: `{f}`"]
        if s.get("error"):
            lines += ["", "```", s["error"].rstrip()[-1500:], "```"]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

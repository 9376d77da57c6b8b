"""Run the sections in order within the time budget; record each one's status; write the report often.

The budget (--minutes) is shared out in a fixed proportion (each section's WEIGHT) of the time that is
left when the section starts, so time one section saves goes to the others. Each section is written
into the report as "failed: interrupted" before it starts and overwritten when it ends, so a run killed
from outside still says where it stopped; a watchdog thread ends the process (report written) if the
suite runs well past its budget, before the device machine's own timeout would kill it silently.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import torch

from alexgui.engine.training.memory import reusing_freed_memory
from benchmarks.gpu_suite import (
    experiments,
    inference,
    realdata,
    recipe,
    report,
    throughput,
    towers,
)
from benchmarks.gpu_suite.context import (
    DRY,
    GPU,
    BudgetExceeded,
    SectionContext,
    Sizes,
    describe_machine,
    share,
)
from benchmarks.gpu_suite.data import DataProblem, check_dataset, generated_dataset

SECTIONS: list[Any] = [throughput, realdata, towers, inference, recipe, experiments]
INTERRUPTED = "failed: interrupted (the suite stopped while this section ran)"
MIN_SECTION_S = {"cuda": 10.0, "cpu": 1.0}  # a share below this is not worth starting
SHM = Path("/dev/shm")


class Terminated(BaseException):
    """SIGTERM (a timeout from outside): not an Exception, so no section swallows it."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_suite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data", type=Path, help="image folder with train/ and val/ class folders "
                   "(imagenette-224-mini); the dry run generates its own")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="folder for suite.json, suite.md, plots, reports")
    p.add_argument("--minutes", type=float, default=8.0, help="time budget for all sections (default 8)")
    p.add_argument("--dry-run", action="store_true", help="every section on the CPU at toy size, generated data")
    p.add_argument("--sections", default="", help="comma-separated subset, e.g. throughput,inference (default all)")
    p.add_argument("--device", default=None, help="default cuda (the dry run: cpu)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new one in /dev/shm or /tmp)")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch folder (run folders, ONNX file)")
    args = p.parse_args(argv)
    names = [s.NAME for s in SECTIONS]
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in names]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    args.selected = chosen or names
    if not args.dry_run and args.data is None:
        p.error("--data is required (except with --dry-run)")
    if args.minutes <= 0:
        p.error("--minutes must be positive")
    return args


def scratch_folder(need_gib: float) -> Path:
    """Checkpoints (~0.5 GB each, written every epoch) go to RAM-backed /dev/shm when it has room."""
    try:
        if SHM.is_dir() and os.access(SHM, os.W_OK) and shutil.disk_usage(SHM).free >= need_gib * 2**30:
            return Path(tempfile.mkdtemp(prefix="alexgui-gpu-suite-", dir=SHM))
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="alexgui-gpu-suite-"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    device = torch.device(args.device or ("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_suite: no usable CUDA GPU here; use --dry-run (or --device cpu)", file=sys.stderr)
        return 2
    sizes = DRY if args.dry_run else GPU
    work = args.work or scratch_folder(3 if args.dry_run else 24)
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["ALEXGUI_CACHE_DIR"] = str(work / "cache")  # decoded images and demo data: scratch, shared by all
    try:
        data = generated_dataset(work / "cache") if args.dry_run else args.data.resolve()
        data_info = {**check_dataset(data), "generated": args.dry_run}
    except (DataProblem, OSError) as e:
        print(f"gpu_suite: {e}", file=sys.stderr)
        return 2
    try:
        result = run_suite(SECTIONS, args, device, sizes, data, data_info, work, started)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    failed = [s["name"] for s in result["sections"] if s["status"].startswith("failed")]
    print(f"\nreport: {args.out / report.MD_NAME}; sections failed: {', '.join(failed) or 'none'}", flush=True)
    return 1 if failed else 0


def new_report(args: argparse.Namespace, machine: dict[str, Any], data_info: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": report.FORMAT, "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "finished": None, "seconds": None, "dry_run": bool(args.dry_run), "minutes": args.minutes,
        "argv": sys.argv[1:], "machine": machine, "data": data_info, "sections": [], "files": [],
        "qt_imported": None,
    }  # fmt: skip


def run_suite(sections: list[Any], args: argparse.Namespace, device: torch.device, sizes: Sizes, data: Path,
              data_info: dict[str, Any], work: Path, started: float) -> dict[str, Any]:
    """Every section in turn; returns the report (also written to args.out after every change)."""
    total_s = args.minutes * 60
    deadline = started + total_s
    machine = describe_machine(device)
    result = new_report(args, machine, data_info)
    selected = [s for s in sections if s.NAME in args.selected]
    weights = [float(s.WEIGHT) for s in selected]
    shared: dict[str, Any] = {}
    current: dict[str, Any] = {}

    def save() -> None:
        result["files"] = sorted({f for s in result["sections"] for f in s["files"]})
        report.write(args.out, result)

    def record_end(status: str) -> None:
        if "entry" in current:
            current["entry"]["status"] = status
        result["seconds"] = time.monotonic() - started
        save()
        print(f"gpu_suite: {status}", file=sys.stderr, flush=True)

    def watchdog_exit(status: str) -> None:
        # From the watchdog thread: the main thread may be stuck in a kernel or a compiler, so end the
        # process here, report written, before the machine's own timeout kills it without one.
        record_end(status)
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        os._exit(3)

    done = threading.Event()
    grace = max(20.0, 0.08 * total_s)
    watchdog = threading.Thread(target=_watch, args=(done, deadline + grace, watchdog_exit, grace), daemon=True)
    watchdog.start()
    main_thread = threading.current_thread() is threading.main_thread()  # signals reach the main thread only
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        for section in sections:
            entry = {"name": section.NAME, "title": section.TITLE, "status": INTERRUPTED, "budget_s": 0.0,
                     "seconds": None, "ran": [], "rows": [], "notes": [], "figures": {}, "files": [],
                     "columns": [list(c) for c in section.COLUMNS]}  # fmt: skip
            result["sections"].append(entry)
            if section not in selected:
                entry["status"] = "skipped: not selected (--sections)"
                continue
            budget = share(deadline - time.monotonic(), weights, selected.index(section))
            entry["budget_s"] = budget
            if budget < MIN_SECTION_S[device.type]:
                entry["status"] = f"skipped: only {budget:.0f} s of the budget left"
                save()
                continue
            save()  # "interrupted" on disk until the section ends: a run killed now says where it died
            _run_section(section, entry, SectionContext(
                name=section.NAME, device=device, dry_run=args.dry_run, sizes=sizes, data=data, work=work,
                out=args.out, machine=machine, budget_s=budget, record=entry, shared=shared, save=save,
            ), current_ref=current)  # fmt: skip
            save()
    except Terminated:
        record_end("failed: killed (SIGTERM) while this section ran")
        raise SystemExit(143) from None
    finally:
        done.set()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    result["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result["seconds"] = time.monotonic() - started
    result["qt_imported"] = any(m in sys.modules for m in ("PySide6", "pyqtgraph", "shiboken6"))
    save()
    return result


def _run_section(section: ModuleType, entry: dict[str, Any], ctx: SectionContext, current_ref: dict[str, Any]) -> None:
    print(f"\n== {section.NAME}: {entry['budget_s']:.0f} s budget", flush=True)
    _point(current_ref, entry)
    try:
        # On the CPU (the dry run) every loop gets the engine's reuse of freed memory, which engine.train
        # uses itself (benchmarks/README.md: 1.3x on CPU), so the plain loops compare on equal terms.
        # On a GPU the large blocks live in CUDA's caching allocator and this changes nothing.
        with reusing_freed_memory() if ctx.device.type == "cpu" else contextlib.nullcontext():
            section.run(ctx)
        entry["status"] = report.STATUS_OK
    except BudgetExceeded as e:
        entry["status"] = f"failed: ran over its budget ({e}); the figures measured so far are kept"
    except Exception as e:  # noqa: BLE001 - record it and go on with the next section
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        entry["status"] = f"failed: {type(e).__name__}: {first}"[:400]
        entry["error"] = traceback.format_exc()[-4000:]
    entry["seconds"] = ctx.elapsed()
    limit = ctx.budget_s * ctx.hard_factor + ctx.grace_s
    if entry["status"] == report.STATUS_OK and entry["seconds"] > limit:
        entry["status"] = (f"failed: ran over its budget ({entry['seconds']:.0f} s of {ctx.budget_s:.0f} s); "
                           "its figures are kept")  # fmt: skip
    print(f"== {section.NAME}: {entry['status']} ({entry['seconds']:.0f} s)", flush=True)
    _point(current_ref, None)
    _free_memory(ctx.device)


def _point(ref: dict[str, Any], entry: dict[str, Any] | None) -> None:
    """Let the watchdog and the SIGTERM handler reach the running section's entry."""
    ref.clear()
    if entry is not None:
        ref["entry"] = entry


def _free_memory(device: torch.device) -> None:
    """What one section compiled or cached must not crowd the next."""
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _watch(done: threading.Event, hard_deadline: float, exit_now: Any, grace: float) -> None:
    while not done.wait(1.0):
        if time.monotonic() > hard_deadline:
            exit_now(f"failed: the suite ran {grace:.0f} s past --minutes; ended by the watchdog")


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()

"""CPU training with glibc's default malloc against the engine's reuse of freed memory
(alexgui/engine/training/memory.py), side by side in one run.

Each measurement is a fresh process (malloc settings are per process), alternated A B A B:
- "main thread": `alexgui train`, as users run it headless;
- "worker thread": the same training on a thread of its own, as the desktop app trains.
"default" sets ALEXGUI_SYSTEM_MALLOC=1, which turns the engine's setting off. Reported: the median of
the per-step images/s after two warm-up steps; the process's minor page faults and kernel (system)
CPU time, start-up included, divided by its steps; and its peak resident memory.

Usage: python -m benchmarks.bench_cpu_memory [--batch-size 8] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from alexgui.config import RunConfig
from benchmarks.headless import alexgui_train, train_in_child
from benchmarks.machine import describe_cpu

WARMUP_STEPS = 2

# Trains on a thread of its own, as the window does.
IN_A_THREAD = """
import sys, threading
from alexgui.engine.training.memory import share_one_heap
share_one_heap()  # as `alexgui` does at start
from alexgui.config import RunConfig
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.loop import train

cfg = RunConfig.load(sys.argv[1])
def work():
    with RunDir.create(sys.argv[2], cfg) as run:
        for event in train(cfg, run):
            pass
worker = threading.Thread(target=work)
worker.start()
worker.join()
"""


def measure(where: str, allocator: str, config: Path, workdir: Path) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(dir=workdir)) / "run"
    env = {k: v for k, v in os.environ.items() if k != "ALEXGUI_SYSTEM_MALLOC"}
    if allocator == "default":
        env["ALEXGUI_SYSTEM_MALLOC"] = "1"
    if where == "main thread":
        command = alexgui_train(config, out)
    else:
        command = [sys.executable, "-c", IN_A_THREAD, str(config), str(out)]
    rates, usage = train_in_child(command, out, env, what=f"{where}, {allocator} malloc")
    steps = len(rates)
    return {
        "ips": statistics.median(rates[WARMUP_STEPS:]),
        "faults": usage.ru_minflt / steps,
        "sys_ms": 1000 * usage.ru_stime / steps,
        "rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="measured steps per run (after 2 warm-up steps)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    cfg = RunConfig()  # the paper's model and recipe on the demo data
    cfg.data.workers = 0
    cfg.train.device = "cpu"
    cfg.train.batch_size = args.batch_size
    cfg.train.max_steps = args.steps + WARMUP_STEPS
    cfg.train.checkpoint_minutes = 0
    cases = [(where, allocator) for where in ("main thread", "worker thread") for allocator in ("default", "reuse")]
    results: dict[tuple[str, str], list[dict[str, float]]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="alexgui-bench-memory-") as tmp:
        workdir = Path(tmp)
        config = workdir / "config.toml"
        config.write_text(cfg.to_toml(), encoding="utf-8")
        measure("main thread", "reuse", config, workdir)  # warm-up: the demo data and its cache
        for r in range(args.rounds):
            for case in cases:
                results[case].append(measure(*case, config, workdir))
            print(f"round {r + 1}: " + "   ".join(f"{w}, {a}: {results[(w, a)][-1]['ips']:.1f} images/s"
                                                for w, a in cases), flush=True)

    import torch  # noqa: F401 - for describe_cpu's torch version and threads

    print(f"\nmachine: {describe_cpu()}, glibc {platform.libc_ver()[1]}")
    print(f"paper model, fp32, CPU, demo data, batch {args.batch_size}, {args.steps} measured steps, "
          f"{args.rounds} rounds; medians\n")
    print("| trained on | malloc | images/s | ratio to default | page faults / step | kernel CPU / step | peak memory |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for where, allocator in cases:
        rows = results[(where, allocator)]
        ips = statistics.median(x["ips"] for x in rows)
        base = statistics.median(x["ips"] for x in results[(where, "default")])
        print(f"| {where} | {allocator} | {ips:.1f} | {ips / base:.2f} | "
              f"{statistics.median(x['faults'] for x in rows):,.0f} | "
              f"{statistics.median(x['sys_ms'] for x in rows):.0f} ms | "
              f"{statistics.median(x['rss_mb'] for x in rows):,.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

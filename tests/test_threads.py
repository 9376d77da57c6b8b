"""engine.threads: the app's GUI thread computes alone and owns no OpenMP pool; worker threads keep
torch's default. Thread settings are per process, so the checks run in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json, os, sys, threading
    import torch

    torch.set_num_threads(2)  # the default on a 2-core machine, whatever this one has
    if sys.argv[1] == "app":
        from alexgui.qt.app import ensure_app  # as the app starts: the QApplication, then the window
        ensure_app()
    else:
        from alexgui.engine.training.threads import compute_serially_in_this_thread
        assert compute_serially_in_this_thread() == 2

    def comm(tid):
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()

    def os_threads():
        # Threads that could be OpenMP workers: unnamed, so called as the process (Qt names its own).
        me = comm(os.getpid())
        found = set()
        for tid in os.listdir("/proc/self/task"):
            try:
                if comm(tid) == me:
                    found.add(tid)
            except OSError:  # ended meanwhile
                pass
        return found

    def big_op():
        x = torch.rand(4_000_000)
        for _ in range(3):
            x = x * 1.0001 + 1  # elementwise: parallel over OpenMP when the thread may use 2

    result = {"main": torch.get_num_threads()}
    before = os_threads()
    big_op()
    result["pool_threads_made_by_main"] = len(os_threads() - before)

    def worker():
        result["worker"] = torch.get_num_threads()
        start = os_threads()
        big_op()
        result["pool_threads_made_by_worker"] = len(os_threads() - start)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    print(json.dumps(result))
    """
)


def probe(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_serial_thread_starts_no_pool_and_workers_keep_the_default() -> None:
    result = probe("engine")
    assert result["main"] == 1
    assert result["pool_threads_made_by_main"] == 0
    assert result["worker"] == 2
    # The worker's parallel op starts a pool (the check above can tell one apart).
    assert result["pool_threads_made_by_worker"] >= 1


def test_the_app_makes_its_gui_thread_serial_before_building_anything() -> None:
    result = probe("app")
    assert result["main"] == 1 and result["pool_threads_made_by_main"] == 0
    assert result["worker"] == 2

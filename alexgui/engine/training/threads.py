"""Which of the app's threads compute with torch's thread pool.

The desktop app's GUI thread must not own a pool of OpenMP threads, or training in its worker thread
slows down. On Linux, PyTorch's OpenMP is GNU libgomp, and each thread that runs a multi-threaded op
gets a pool of its own (cores - 1 threads) for the rest of its life. Between two parallel regions a
libgomp worker spins for about 3 ms, waiting for the next one; but once the process holds more
OpenMP threads than it has CPUs, libgomp spins only 100 times (about a microsecond) and sleeps, so
every parallel region, hundreds of them in a training step, first waits for its workers to wake. A
GUI thread that ran a single multi-threaded op, building a model say, keeps its pool, and with the
training thread's own pool that is more threads than CPUs: training on a 2-core machine ran 8%
slower in the window than on the main thread, and as fast once the GUI thread had no pool
(benchmarks/README.md).

So the app runs torch single-threaded on its GUI thread, which only ever does small work there (the
heavy work runs in worker threads, which keep the default).
"""

from __future__ import annotations

import threading

import torch


def compute_serially_in_this_thread() -> int:
    """Make torch ops called from this thread run on it alone, and leave torch's default for threads
    started later as it was. Call it before this thread runs any multi-threaded op: a pool it already
    has stays. Returns the default that other threads keep."""
    default = torch.get_num_threads()  # also completes torch's per-thread set-up, which would undo the next line
    torch.set_num_threads(1)  # this thread's OpenMP and MKL settings, and torch's default for new threads
    # Put the default back from a thread that never computes, so that this thread's own setting stays.
    restore = threading.Thread(target=torch.set_num_threads, args=(default,), name="alexgui-thread-default")
    restore.start()
    restore.join()
    return default

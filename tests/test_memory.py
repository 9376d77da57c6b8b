"""engine.memory: freed tensor memory is reused, in any thread, and handed back when asked.

malloc settings are process-wide and the arena count only reaches threads created after it, so each
check runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from alexgui.engine.training import memory
from alexgui.engine.training.memory import user_tuned_malloc

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt"
)

# In a worker thread, as the window trains: steps of AlexNet's fc6 and fc7 (235 MB of weight gradients,
# the blocks that matter) with the paper's SGD; the page faults of the last steps, and the resident
# memory inside the run and after it.
PROBE = textwrap.dedent(
    """
    import json, resource, sys, threading
    from alexgui.engine.training.memory import reusing_freed_memory, share_one_heap

    shared = share_one_heap() if sys.argv[1] == "keep" else False  # first, as `alexgui` does
    import torch

    torch.set_num_threads(1)
    result = {"shared": shared}

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def steps(n):
        model = torch.nn.Sequential(torch.nn.Linear(9216, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 4096))
        sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        x = torch.randn(8, 9216)
        faults = []
        for step in range(n):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            sgd.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            sgd.step()
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return sum(faults[-4:]) / 4

    def work():
        if sys.argv[1] == "keep":
            with reusing_freed_memory() as result["reusing"]:
                result["faults_per_step"] = steps(16)
                result["rss_in_run_mb"] = rss_mb()
        else:
            result["faults_per_step"] = steps(16)
            result["rss_in_run_mb"] = rss_mb()
        result["rss_after_mb"] = rss_mb()
        result["faults_per_step_after"] = steps(6)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    print(json.dumps(result))
    """
)

# Pages of the weight gradients, and of SGD's weight-decay temporaries of the same size.
GRADIENT_PAGES = (9216 * 4096 + 4096 * 4096) * 4 / os.sysconf("SC_PAGE_SIZE")


def huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


def probe(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    environ.pop("ALEXGUI_SYSTEM_MALLOC", None)
    environ.pop("THP_MEM_ALLOC_ENABLE", None)
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=environ, timeout=300, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc_only
def test_a_training_thread_reuses_freed_blocks_and_hands_them_back_after_the_run() -> None:
    kept = probe("keep")
    assert kept["shared"] is True and kept["reusing"] is True
    # Reused memory is already mapped: fresh gradients would fault in ~57,000 pages a step (fewer
    # where transparent huge pages are always on, which the default run below shows).
    assert kept["faults_per_step"] < 0.01 * GRADIENT_PAGES, kept
    # The run's memory, freed when it ends, goes back to the system ...
    assert kept["rss_in_run_mb"] - kept["rss_after_mb"] > 100, kept
    # ... and outside a run glibc maps large blocks again, as it did before.
    if not huge_pages_always():
        assert kept["faults_per_step_after"] > 0.5 * GRADIENT_PAGES, kept


@glibc_only
def test_without_the_settings_a_worker_thread_maps_fresh_pages_each_step() -> None:
    if huge_pages_always():
        pytest.skip("transparent huge pages are always on here: fresh gradients fault in 2 MB at a time")
    default = probe("default")
    assert default["shared"] is False
    assert default["faults_per_step"] > 0.5 * GRADIENT_PAGES, default


@glibc_only
def test_the_users_own_malloc_settings_win() -> None:
    assert probe("keep", ALEXGUI_SYSTEM_MALLOC="1")["reusing"] is False
    assert probe("keep", MALLOC_ARENA_MAX="4")["shared"] is False


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("trim", pad))
        return 1


def test_overlapping_runs_restore_the_settings_only_when_the_last_one_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    monkeypatch.setattr(memory, "_tunable", lambda: libc)
    with memory.reusing_freed_memory() as first:
        assert first is True
        set_up = list(libc.calls)
        assert set_up == [("mallopt", memory._M_MMAP_MAX), ("mallopt", memory._M_TRIM_THRESHOLD)]
        with memory.reusing_freed_memory():
            pass
        assert libc.calls == set_up  # the inner run ended, the outer one still trains
    assert libc.calls[-1] == ("trim", 0)
    assert ("mallopt", memory._M_MMAP_MAX) in libc.calls[len(set_up):]
    # An exception inside a run restores them too.
    libc.calls.clear()
    with pytest.raises(RuntimeError):
        with memory.reusing_freed_memory():
            raise RuntimeError("training failed")
    assert libc.calls[-1] == ("trim", 0)


def test_user_tuned_malloc_reads_the_environment() -> None:
    assert not user_tuned_malloc({})
    assert not user_tuned_malloc({"ALEXGUI_SYSTEM_MALLOC": "0", "GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
    assert user_tuned_malloc({"ALEXGUI_SYSTEM_MALLOC": "1"})
    assert user_tuned_malloc({"MALLOC_TRIM_THRESHOLD_": "0"})
    assert user_tuned_malloc({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})

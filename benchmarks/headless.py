"""Training in a child process, as `alexgui train` runs on a server, for benchmarks that compare it
with something else: its per-step images/s and the child's own resource usage."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from alexgui.engine.events import StepDone
from alexgui.engine.store.rundir import RunDir


def alexgui_train(config: Path, out: Path) -> list[str]:
    """The command line of `alexgui train` with a settings file, writing the run to `out`."""
    return [sys.executable, "-m", "alexgui", "train", "--config", str(config), "--out", str(out)]


def train_in_child(command: list[str], out: Path, env: dict[str, str] | None = None,
                   what: str = "headless training") -> tuple[list[float], resource.struct_rusage]:
    """Run `command` (which trains into the run directory `out`); the images/s of every step it logged
    and the child's rusage. SystemExit with its stderr when it fails."""
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # reaped here, for this child's own rusage
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise SystemExit(f"{what} failed ({code}): {err.read()[-2000:]}")
    events, problems = RunDir.open(out).events()
    if problems:
        raise SystemExit(f"{what}: the run's metrics are unreadable: {problems[:3]}")
    return [ev.images_per_s for ev in events if isinstance(ev, StepDone)], usage

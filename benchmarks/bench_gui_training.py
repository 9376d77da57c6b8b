"""Training with the window open and plotting, against headless training, in one run.

1. Training images/s of the same run settings, headless (`alexgui train` in a process of its own,
   as users run it) and in the main window (worker thread, live plots, log, progress, all panels),
   alternated A B A B after a warm-up, never at the same time; medians of the per-step images/s of
   each run (the first two steps of a run are warm-up). Goal: window / headless >= 0.95. Headless speed alone drifts by
   several percent between runs on a shared machine, so the figure is the median of the rounds'
   ratios, and the GUI thread's own CPU time per second of training is printed beside it: that share
   is what the window can take from training, and it does not drift with the machine's load.
2. The longest stall of the GUI event loop while the window trains: a 5 ms QTimer records the gaps
   between its ticks from the end of the warm-up steps to the last step. Goal: <= 50 ms on CPU.
   The same probe with nothing training is printed next to it: on a shared machine the operating
   system alone can hold the GUI thread off the CPU for tens of milliseconds.

Runs offscreen when there is no display. --screenshot PATH also saves the window (at --size) after
a longer run on the demo data, for the docs.
Usage: python -m benchmarks.bench_gui_training [--device cpu] [--batch-size 8] [--steps 30] [--rounds 5]
       python -m benchmarks.bench_gui_training --screenshot docs/screenshot-training.png
           [--screenshot-large docs/screenshot-training-1600x1000.png] [--screenshot-steps 120]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from alexgui.engine.training.memory import share_one_heap

share_one_heap()  # as `alexgui` does at start, before torch starts a thread

import torch  # noqa: E402
from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from alexgui.config import RunConfig  # noqa: E402
from alexgui.qt.app import apply_theme, ensure_app, freeze_startup_heap  # noqa: E402
from alexgui.qt.explorer import install_explorer  # noqa: E402
from alexgui.qt.main_window import MainWindow  # noqa: E402
from alexgui.qt.panels.monitor import TrainSettingsForm  # noqa: E402
from alexgui.qt.settings import AppSettings, open_settings  # noqa: E402
from benchmarks.headless import alexgui_train, train_in_child  # noqa: E402

WARMUP_STEPS = 2


def bench_config(args: argparse.Namespace, steps: int) -> RunConfig:
    cfg = TrainSettingsForm.first_launch_config()  # the demo data and the paper's optimiser
    cfg.data.workers = 0
    cfg.data.crop = args.crop
    cfg.train.device = args.device
    cfg.train.batch_size = args.batch_size
    cfg.train.epochs = 1000
    cfg.train.max_steps = steps + WARMUP_STEPS
    cfg.train.checkpoint_minutes = 0
    return cfg


def headless(cfg: RunConfig, workdir: Path) -> list[float]:
    """Per-step images/s of `alexgui train` with the same settings, in a process of its own, as a user
    runs it on a server (training on its main thread, no Qt)."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    config = folder / "config.toml"
    config.write_text(cfg.to_toml(), encoding="utf-8")
    rates, _ = train_in_child(alexgui_train(config, folder / "run"), folder / "run")
    return rates[WARMUP_STEPS:]


class StallProbe:
    """Gaps between the ticks of a 5 ms timer: how long the event loop could not run."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(lambda: self.ticks.append(time.time()))

    def idle_gaps(self, seconds: float) -> list[float]:
        """The same probe with nothing training: what the machine itself costs (other processes, the OS)."""
        self.ticks.clear()
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        self.timer.start()
        loop.exec()
        self.timer.stop()
        return [b - a for a, b in zip(self.ticks, self.ticks[1:])]

    def gaps_between(self, start: float, end: float) -> list[float]:
        inside = [t for t in self.ticks if start <= t <= end]
        return [b - a for a, b in zip(inside, inside[1:])]


def in_window(window: MainWindow, cfg: RunConfig, probe: StallProbe,
              grab: tuple[list[tuple[str, tuple[int, int]]], int] | None = None,
              probing: bool = True, cpu: list[float] | None = None) -> tuple[list[float], list[float]]:
    """Per-step images/s and event-loop gaps (s) of one run trained from the window.

    The probe's 5 ms timer is measurement overhead (200 Python callbacks a second in the GUI thread,
    contending for the GIL with the trainer): throughput is measured in runs without it."""
    window.monitor.form.set_config(cfg)
    loop = QEventLoop()
    window.session.finished.connect(loop.quit)
    if grab is not None:
        shots, at_step = grab

        def maybe_grab() -> None:
            entry = window.runs.get(window._training_key or "")
            if entry is not None and entry.history.step_count >= at_step and window.session.state == "running":
                for path, (w, h) in shots:
                    window.resize(w, h)
                    for _ in range(5):
                        QApplication.processEvents()
                    window.plots.refresh()
                    window.grab().save(path)
                    print(f"saved {path} ({window.width()}x{window.height()}) at step {entry.history.step_count}")
                window.session.stop()

        checker = QTimer()
        checker.timeout.connect(maybe_grab)
        checker.start(500)
    probe.ticks.clear()
    if probing:
        probe.timer.start()
    cpu0, wall0 = time.thread_time(), time.time()  # this is the GUI thread: its own CPU time
    window.start_training()
    loop.exec()
    if cpu is not None:
        cpu.append((time.thread_time() - cpu0) / (time.time() - wall0))
    probe.timer.stop()
    window.session.finished.disconnect(loop.quit)
    history = window.runs[max(window.runs, key=lambda k: int(k[3:]))].history
    steps = [float(x) for x in history.column("ips")][WARMUP_STEPS:]
    # The steady state: from the end of the warm-up steps to the last step.
    times = history.step_times()
    gaps = probe.gaps_between(times[WARMUP_STEPS - 1], times[-1]) if len(times) > WARMUP_STEPS else []
    return steps, gaps


def main(argv: list[str] | None = None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="alexgui-bench-gui-"))
    try:
        return measure(argv, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # every run leaves a ~0.5 GB checkpoint


def measure(argv: list[str] | None, workdir: Path) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--steps", type=int, default=30, help="measured steps per run (after 2 warm-up steps)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--screenshot", help="save the window to this PNG after a longer run")
    p.add_argument("--screenshot-steps", type=int, default=120)
    p.add_argument("--size", default="1280x800", help="window size, WIDTHxHEIGHT")
    p.add_argument("--screenshot-large", help="also save the window at 1600x1000 to this PNG")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(workdir / "settings"))
    app = ensure_app()
    apply_theme(app)
    settings = AppSettings(open_settings("alexgui-bench", "alexgui"))
    settings.runs_root = workdir / "runs"
    window = MainWindow(settings)
    install_explorer(window)  # the app as users get it: filter grid fed live from training, all panels
    window.resize(width, height)
    window.show()
    freeze_startup_heap()  # as `alexgui` does
    probe = StallProbe()

    if args.screenshot:
        # The first-launch settings as a user sees them (quick preset, demo data), trained for a while.
        cfg = TrainSettingsForm.first_launch_config()
        cfg.train.device = args.device
        shots = [(args.screenshot, (width, height))]
        if args.screenshot_large:
            shots.append((args.screenshot_large, (1600, 1000)))
        in_window(window, cfg, probe, grab=(shots, args.screenshot_steps))
        window.session.shutdown()
        window.close()
        return 0

    cfg = bench_config(args, args.steps)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, Qt platform {app.platformName()}")
    print(f"settings: demo data, {cfg.model.arch} AlexNet, crop {cfg.data.crop}, batch {cfg.train.batch_size}, "
          f"device {cfg.train.device}, {args.steps} measured steps per run, {args.rounds} rounds")
    headless(cfg, workdir)  # warm-up: demo data, decoded cache, allocator
    rows = []
    gui_cpu: list[float] = []
    all_gaps: list[float] = []
    idle: list[float] = []
    for r in range(args.rounds):
        a = statistics.median(headless(cfg, workdir))
        idle_round = probe.idle_gaps(3.0)
        idle += idle_round
        b_rates, _ = in_window(window, cfg, probe, probing=False, cpu=gui_cpu)
        _, gaps = in_window(window, cfg, probe)
        b = statistics.median(b_rates)
        all_gaps += gaps
        rows.append((a, b))
        print(f"round {r + 1}: headless {a:7.1f} images/s   window {b:7.1f} images/s   ratio {b / a:5.3f}   "
              f"GUI thread CPU {100 * gui_cpu[-1]:4.1f}% of a core   "
              f"longest event-loop stall {1000 * max(gaps, default=0):5.1f} ms "
              f"(idle, nothing training: {1000 * max(idle_round, default=0):5.1f} ms)")
    headless_median = statistics.median(a for a, _ in rows)
    window_median = statistics.median(b for _, b in rows)
    all_gaps.sort()
    p99 = all_gaps[int(0.99 * (len(all_gaps) - 1))] if all_gaps else 0.0
    ratios = sorted(b / a for a, b in rows)
    print(f"\nimages/s, median of rounds: headless {headless_median:.1f}, window {window_median:.1f}; "
          f"window / headless: median of the rounds' ratios {statistics.median(ratios):.3f} (goal >= 0.95), "
          f"range {ratios[0]:.3f} to {ratios[-1]:.3f}")
    print(f"GUI thread CPU while training: {100 * statistics.median(gui_cpu):.1f}% of one core "
          f"(of {os.cpu_count()} cores; median of rounds)")
    print(f"GUI event loop while training: longest stall {1000 * max(all_gaps, default=0):.1f} ms (goal <= 50 ms), "
          f"p99 gap {1000 * p99:.1f} ms, {len(all_gaps)} ticks of a 5 ms timer; "
          f"idle baseline on this machine: longest gap {1000 * max(idle, default=0):.1f} ms")
    window.session.shutdown()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

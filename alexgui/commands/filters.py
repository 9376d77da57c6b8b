"""`alexgui filters`: Figure 3 forming, from a run's filter history, as an animated GIF or one PNG frame.

    alexgui filters --run RUN_DIR --out FILE.gif|FILE.png [--step N] [--fps F]

FILE.gif: one frame per snapshot the run kept (up to --step N when given); FILE.png: the frame at step
N, or the last one before it (default: the latest). Each frame shows conv1's kernels, tower 0's above
tower 1's, with the step and each tower's colour specificity and structure score. Works on a run that
another process is still training (each snapshot file is written whole or not at all), and on runs
made before snapshots were kept: their checkpoints are their frames.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexgui.commands.arguments import existing_folder, int_in_range, number_in_range
from alexgui.config import Range


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("filters", help="conv1's kernels over training (Figure 3 forming) as a GIF or a PNG")
    p.add_argument("--run", required=True, type=existing_folder, metavar="RUN_DIR", help="a training run's folder")
    p.add_argument("--out", required=True, type=Path, metavar="FILE",
                   help="FILE.gif: the animation, a frame per snapshot; FILE.png: one frame")
    p.add_argument("--step", type=int_in_range(0, 2**62), default=None, metavar="N",
                   help="PNG: the frame at step N (or the last before it); GIF: frames up to step N")
    p.add_argument("--fps", type=number_in_range(Range(0.1, 60.0)), default=4.0, metavar="F",
                   help="GIF: frames per second (default 4; the last frame is held a second longer)")


def run(args: argparse.Namespace) -> int:
    from alexgui.engine.store.filter_history import FilterHistoryError, snapshots
    from alexgui.engine.understand.filter_animation import pick, save_gif, save_png

    out: Path = args.out
    kind = out.suffix.lower()
    if kind not in (".gif", ".png"):
        print(f"alexgui filters: --out {out}: the file must end in .gif (animation) or .png (one frame)", file=sys.stderr)
        return 2
    refs = snapshots(args.run)
    if not refs:
        print(f"alexgui filters: {args.run}: no filter snapshots and no checkpoint yet (is it a training run's folder?)",
              file=sys.stderr)
        return 2
    try:
        if kind == ".png":
            ref = pick(refs, args.step)
            save_png(ref, out)
            print(f"step {ref.step:,} of {args.run} to {out}")
            return 0
        chosen = [r for r in refs if args.step is None or r.step <= args.step] or refs[:1]
        skipped: list[str] = []
        frames = save_gif(chosen, out, fps=args.fps, progress=_progress, skipped=skipped)
    except FilterHistoryError as e:
        print(f"alexgui filters: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # every snapshot damaged
        print(f"alexgui filters: {args.run}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the output cannot be written (a folder of that name, no such folder, no space)
        print(f"alexgui filters: --out {out}: cannot write it ({e.strerror or e})", file=sys.stderr)
        return 2
    finally:
        if sys.stderr.isatty():
            print(file=sys.stderr)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"{frames} frame(s), steps {chosen[0].step:,} to {chosen[-1].step:,} of {args.run}, to {out}")
    return 0


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\rrendering frames {done}/{total}", end="", file=sys.stderr, flush=True)

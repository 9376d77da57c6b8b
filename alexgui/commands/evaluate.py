"""`alexgui evaluate`: how good a model is on a labelled folder, and where it fails.

    alexgui evaluate --model MODEL --data DIR [--ten-crop] [--batch-size B] [--worst K] [--device D]
                     [--json] [--out REPORT_DIR]

MODEL as for `classify`. DIR has one subfolder per class (its val/ when it has train/ and val/), or is
a training run's folder (its own validation split). Exit 0 when every image was evaluated, 1 when some
files were skipped, 2 when the model or the folder cannot be used, 130 on Ctrl-C (nothing written).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from alexgui.commands.arguments import int_in_range
from alexgui.commands.classify import add_model_arguments, open_predictor
from alexgui.commands.progress import bar
from alexgui.formatting import format_duration


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="top-1/top-5 error, confusion matrix, per-class errors and the worst images")
    p.add_argument("--model", required=True, help="checkpoint, run folder, ONNX file, .pth, or 'torchvision'")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="a folder with one subfolder per class (its val/ when it has train/ and val/), "
                   "or a training run's folder (its validation images)")
    p.add_argument("--ten-crop", action="store_true", help="average over the paper's 10 test crops")
    p.add_argument("--batch-size", type=int_in_range(1, 4096), default=32, metavar="B", help="images per batch (default 32)")
    p.add_argument("--worst", type=int_in_range(0, 100_000), default=16, metavar="K",
                   help="list the K images with the highest loss (default 16)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on standard output")
    p.add_argument("--out", metavar="REPORT_DIR",
                   help="write report.json, report.md, confusion.png, worst.png and predictions.csv there")
    add_model_arguments(p)


def progress_printer(label: str) -> Callable[[int, int], None]:
    """A (done, total) callback: a bar with the count and the time left on stderr, a few times a second."""
    start = time.monotonic()
    last = [0.0]
    tty = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not finished and now - last[0] < (0.25 if tty else 10.0):
            return
        last[0] = now
        rate = done / max(now - start, 1e-9)
        left = format_duration((total - done) / rate) if done and not finished else "–"
        line = f"{label} {bar(done / max(total, 1), 24)} {done}/{total} images, {rate:.1f}/s, {left} left"
        print(("\r" if tty else "") + line, end="\n" if finished or not tty else "", file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alexgui.engine.store.ownership import is_run_dir
    from alexgui.engine.understand.eval_images import EvaluationError, find_evaluation_images, run_validation_images
    from alexgui.engine.understand.evaluation import evaluate
    from alexgui.engine.understand.evaluation_files import write_evaluation

    if not str(args.data).strip():  # Path("") would be the current folder
        print("alexgui evaluate: argument --data: an empty folder name", file=sys.stderr)
        return 2
    predictor = open_predictor(args, "evaluate")
    if predictor is None:
        return 2
    try:
        if is_run_dir(Path(args.data)):
            images = run_validation_images(args.data, predictor.class_names)
        else:
            images = find_evaluation_images(args.data, predictor.class_names, predictor.wnids)
    except EvaluationError as e:
        print(f"alexgui evaluate: {e}", file=sys.stderr)
        return 2
    if images.unknown_classes:
        print(f"alexgui evaluate: {len(images.unknown_classes)} folder(s) name no class of the model and are left "
              f"out: {', '.join(images.unknown_classes)}", file=sys.stderr)
    if not images.items:
        print(f"alexgui evaluate: {images.folder}: no image files in the matching class folders", file=sys.stderr)
        return 2
    if not args.json:
        print(f"model {predictor.source}; {len(images.items)} images in {images.folder}", file=sys.stderr)
    try:
        report = evaluate(predictor, images, ten_crop=args.ten_crop, batch_size=args.batch_size,
                          progress=progress_printer("evaluating"))
    except KeyboardInterrupt:
        print("\nalexgui evaluate: interrupted; nothing written", file=sys.stderr)
        return 130
    for s in report.skipped:
        print(f"alexgui evaluate: skipped {s.path}: {s.reason}", file=sys.stderr)
    if report.n == 0:
        print(f"alexgui evaluate: {images.folder}: none of the {len(images.items)} files could be read as an image",
              file=sys.stderr)
        return 2
    data = report.to_json(args.worst)
    if args.out:
        try:
            written = write_evaluation(args.out, report, args.worst, data)
        except OSError as e:
            print(f"alexgui evaluate: {args.out}: cannot write the report ({e.strerror or e})", file=sys.stderr)
            return 2
        print(f"alexgui evaluate: wrote {', '.join(p.name for p in written)} in {args.out}", file=sys.stderr)
    if args.json:
        json.dump(data, sys.stdout, indent=1, ensure_ascii=False)
        print()
    else:
        _print_text(data)
    return 1 if report.skipped else 0


def _print_text(data: dict) -> None:
    def pct(v: float | None) -> str:
        return "    –" if v is None else f"{100 * v:5.1f}%"

    print(f"{data['n']} images, {data['crop']} crop: top-1 error {100 * data['top1_error']:.1f}%, "
          f"top-5 error {100 * data['top5_error']:.1f}%")
    width = max([len(r["class"]) for r in data["per_class"]] + [5])
    print(f"{'class':<{width}}  images  precision  recall  top-1 err  top-5 err")
    for r in data["per_class"]:
        print(f"{r['class']:<{width}}  {r['n']:6d}     {pct(r['precision'])}  {pct(r['recall'])}     "
              f"{pct(r['top1_error'])}     {pct(r['top5_error'])}")
    if data["worst"]:
        print("highest loss:")
        for w in data["worst"]:
            print(f"  {w['loss']:6.2f}  {w['path']}  true {w['true']} ({w['prob_true']:.0%}), "
                  f"said {w['predicted']} ({w['prob_predicted']:.0%})")

"""`alexgui classify`: the top-k classes of image files, as text or JSON.

    alexgui classify --model MODEL IMAGE_OR_DIR... [--top K] [--ten-crop] [--json]

MODEL is a checkpoint (.safetensors), a run folder, an ONNX file, a torchvision .pth, or
`torchvision` (ImageNet AlexNet from the model zoo; --download fetches it when missing). Every
image is reported, readable or not; the exit status is 0 when all were classified, 1 when any
failed, 2 when the model could not be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from alexgui.commands.arguments import inference_device, int_in_range
from alexgui.config import RANGES

if TYPE_CHECKING:
    from alexgui.engine.inference.predict import Predictor

# More classes than any model may have (config's limit) would only repeat the whole list.
MAX_TOP = int(RANGES[("model", "num_classes")].high)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="classify image files with a model (top-k classes)")
    p.add_argument("--model", required=True, help="checkpoint, run folder, ONNX file, .pth, or 'torchvision'")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--top", type=int_in_range(1, MAX_TOP), default=5, metavar="K",
                   help="classes to report per image (default 5)")
    p.add_argument("--ten-crop", action="store_true", help="average over the paper's 10 test crops")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    add_model_arguments(p)


def stderr_progress(label: str, scale: float = 1.0, unit: str = "") -> Callable[[int, int], None]:
    """A (done, total) callback drawing one line on stderr, at most a few times a second."""
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.25 and done < total:
            return
        last[0] = now
        of = f" / {total / scale:.0f}" if total else ""
        end = "\n" if total and done >= total else ""
        print(f"\r{label}: {done / scale:.0f}{of} {unit}".rstrip() + end, end="", file=sys.stderr, flush=True)

    return show


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--backend, --device and --download, as classify and evaluate take them (see open_predictor)."""
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="torch (default), or onnx: ONNX Runtime on an .onnx file, or on any other model "
                   "exported on the fly (cached); TensorRT, then CUDA, then the CPU")
    p.add_argument("--device", default=None,
                   help="torch: auto (default: CUDA, else Apple's mps, else the CPU), cpu, cuda, cuda:N or mps; "
                   "onnx: auto (default), cpu, cuda[:N], tensorrt[:N]")
    p.add_argument("--download", action="store_true", help="download torchvision's weights when missing")


def open_predictor(args: argparse.Namespace, command: str) -> Predictor | None:
    """The model `args.model` names on the backend and device asked for; None (the reason printed on
    stderr, one line) when it cannot be loaded."""
    from alexgui.engine.inference.predict import PredictorError
    from alexgui.engine.inference.sources import load_predictor

    onnx = args.backend == "onnx" or str(args.model).lower().endswith(".onnx")
    device = inference_device(args.device, onnx)  # before any loading: the vocabulary depends on the backend
    try:
        if onnx:
            from alexgui.engine.inference.onnx_cache import load_onnx_backend

            return load_onnx_backend(args.model, device=device,
                                     progress=lambda text: print(text, file=sys.stderr, flush=True))
        return load_predictor(args.model, device=device, allow_download=args.download,
                              progress=stderr_progress("download", scale=1e6, unit="MB") if args.download else None)
    except PredictorError as e:
        print(f"alexgui {command}: {e}", file=sys.stderr)
        return None


def say_no_images(command: str, inputs: list[str]) -> None:
    """No image file in what was given: each input named, so a mistyped or empty folder is found at once."""
    from alexgui.engine.data.walk import display_path

    named = ", ".join(display_path(p) for p in inputs[:3]) + (f" and {len(inputs) - 3} more" if len(inputs) > 3 else "")
    from alexgui.engine.inference.predict import IMAGE_SUFFIXES

    print(f"alexgui {command}: no image files found in {named} (a folder's files are taken by their suffix: "
          f"{' '.join(sorted(IMAGE_SUFFIXES))})", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from alexgui.engine.data.walk import display_path
    from alexgui.engine.inference.predict import classify_files, expand_inputs

    predictor = open_predictor(args, "classify")
    if predictor is None:
        return 2
    described = predictor.describe()
    backend = {"backend": described.get("backend", "torch"), "provider": described.get("provider")}
    for warning in getattr(predictor, "warnings", []):
        print(f"alexgui classify: {warning}", file=sys.stderr)
    if not args.json:
        print(f"model {predictor.source} on {backend['backend']} ({backend['provider']})", file=sys.stderr)
    paths = expand_inputs(args.images)
    if not paths:
        say_no_images("classify", args.images)
        return 1
    results = []
    failed = 0
    for result in classify_files(predictor, paths, top_k=args.top, ten_crop=args.ten_crop):
        failed += result.error is not None
        if args.json:
            results.append(result.to_json() if result.error is not None else {**result.to_json(), **backend})
            continue
        if result.error is not None:
            print(f"{display_path(result.path) or repr('')}: ERROR {result.error}", flush=True)
            continue
        truth = ""
        if result.true_index is not None:
            truth = f"  (true: {predictor.class_names[result.true_index]})"
        # A name that is not valid UTF-8 shows its bytes as \xNN, as in every message about files.
        print(f"{display_path(result.path)}  [{result.ms:.0f} ms]{truth}")
        for t in result.top:
            print(f"  {t.prob * 100:6.2f}%  {t.label}  [{t.index}]")
        sys.stdout.flush()
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        print()
    if failed:
        print(f"alexgui classify: {failed} of {len(paths)} file(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0

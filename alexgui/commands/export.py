"""`alexgui export`: a model as an ONNX file, followed by a PyTorch vs ONNX Runtime parity check.

    alexgui export --model MODEL --out FILE.onnx [--fp16] [--opset N] [--images DIR] [--json]

MODEL is a checkpoint (.safetensors), a run folder, a torchvision .pth, or `torchvision`. The ONNX
file has a dynamic batch axis, two outputs (logits, fc7 features) and metadata describing the classes
and the preprocessing. The parity report is printed and saved beside the model as FILE.parity.json.
Exit status: 0 exported and parity passed, 1 exported but parity failed, 2 nothing exported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alexgui.commands.arguments import existing_folder, onnx_opset


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX and check it against PyTorch",
        description="Export a model to ONNX (dynamic batch; outputs logits and fc7 features; metadata with "
        "class names and preprocessing), then compare PyTorch and ONNX Runtime on generated images and, "
        "with --images, on real ones. The report is saved as FILE.parity.json next to the model.",
    )
    p.add_argument("--model", required=True, help="checkpoint (.safetensors), run folder, torchvision .pth, or 'torchvision'")
    p.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    p.add_argument("--fp16", action="store_true", help="float16 weights and arithmetic (input/outputs stay float32)")
    # The exporter's range, imported only when --opset is given so that `alexgui --help` stays quick.
    p.add_argument("--opset", type=onnx_opset, default=None, help="ONNX opset, 18 to 24 (default 18)")
    p.add_argument("--images", type=existing_folder, metavar="DIR",
                   help="also check parity on the images in this folder")
    p.add_argument("--json", action="store_true", help="print the parity report as JSON")
    p.add_argument("--download", action="store_true", help="download torchvision's weights when missing")


def run(args: argparse.Namespace) -> int:
    from alexgui.engine.inference.onnx_export import DEFAULT_OPSET, ExportError
    from alexgui.engine.inference.onnx_providers import OnnxModelError
    from alexgui.engine.inference.parity import export_and_check
    from alexgui.engine.inference.predict import PredictorError, TorchPredictor
    from alexgui.engine.inference.sources import load_predictor

    def say(message: str) -> None:
        print(f"export: {message}", file=sys.stderr, flush=True)

    opset = DEFAULT_OPSET if args.opset is None else args.opset
    if args.out.suffix.lower() != ".onnx":
        print(f"alexgui export: {args.out}: the output file name must end in .onnx", file=sys.stderr)
        return 2
    if Path(args.model).suffix.lower() == ".onnx":
        print(f"alexgui export: {args.model}: already an ONNX file; give the checkpoint or run folder it came from",
              file=sys.stderr)
        return 2
    say(f"loading {args.model}")
    try:
        predictor = load_predictor(args.model, "cpu", allow_download=args.download)
    except PredictorError as e:
        print(f"alexgui export: {e}", file=sys.stderr)
        return 2
    if not isinstance(predictor, TorchPredictor):
        print(f"alexgui export: {args.model}: not a PyTorch model, nothing to export", file=sys.stderr)
        return 2
    try:
        result = export_and_check(predictor, args.out, fp16=args.fp16, opset=opset, images_dir=args.images,
                                  progress=say)
    except (ExportError, OnnxModelError) as e:
        print(f"alexgui export: {e}", file=sys.stderr)
        return 2
    report = result.parity
    if args.json:
        json.dump({"onnx": str(result.path), "size_bytes": result.size_bytes, "parity_report": str(result.parity_path),
                   "parity": report.to_json()}, sys.stdout, indent=1)
        print()
    else:
        print(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB) in {result.seconds:.1f} s")
        print(report.summary())
        print(f"parity report: {result.parity_path}")
    if not report.passed:
        print(f"alexgui export: {result.path}: parity check FAILED; the file was written but its outputs differ "
              f"from PyTorch's (see {result.parity_path})", file=sys.stderr)
        return 1
    return 0

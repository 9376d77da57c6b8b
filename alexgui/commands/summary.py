"""`alexgui summary`: the layers of a network, their output shapes and parameter counts; with --model, a
trained model's network, classes, preprocessing and, for a fine-tuned one, where it came from."""

from __future__ import annotations

import argparse

from alexgui.commands.arguments import int_in_range
from alexgui.config import RANGES

# At least two classes, as a dataset must have; at most what a model may have (config's limit).
MIN_CLASSES = 2
MAX_CLASSES = int(RANGES[("model", "num_classes")].high)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="print the layers, output shapes and parameter counts")
    p.add_argument("--arch", choices=["paper", "torchvision"], default="paper", help="network (default: paper)")
    p.add_argument("--classes", type=int_in_range(MIN_CLASSES, MAX_CLASSES), default=1000,
                   help=f"number of classes, {MIN_CLASSES} to {MAX_CLASSES} (default 1000)")
    p.add_argument("--model", default=None,
                   help="a checkpoint, run folder, torchvision weights file or 'torchvision': describe that model "
                   "(its lineage when it was fine-tuned) instead of --arch and --classes")


def run(args: argparse.Namespace) -> int:
    import torch

    if args.model is not None:
        return _describe_model(args.model)

    from alexgui.config import ModelConfig
    from alexgui.engine.model.networks import build_model
    from alexgui.engine.model.summary import format_summary, summary_rows

    # On the meta device: shapes and parameter counts without allocating or initialising a weight, so
    # even 100,000 classes (1.6 GB of fc8 weights) take no memory and no time.
    with torch.device("meta"):
        model = build_model(ModelConfig(arch=args.arch, num_classes=args.classes))
    print(format_summary(summary_rows(model)))
    return 0


def _describe_model(spec: str) -> int:
    """The named model's network, classes, preprocessing and lineage, then its layer table."""
    import sys

    from alexgui.engine.inference.predict import PredictorError, TorchPredictor
    from alexgui.engine.inference.sources import load_predictor
    from alexgui.engine.model.summary import format_summary, summary_rows
    from alexgui.engine.training.init_source import describe_lineage

    try:
        predictor = load_predictor(spec)
    except PredictorError as e:
        print(f"alexgui summary: {e}", file=sys.stderr)
        return 2
    if not isinstance(predictor, TorchPredictor):
        print(f"alexgui summary: {spec}: an ONNX file; give the checkpoint or run folder it was exported from",
              file=sys.stderr)
        return 2
    lineage = predictor.lineage
    names = predictor.class_names
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    pre = predictor.preprocess.describe()
    print(f"model: {predictor.source}")
    print(f"network: {predictor.arch}, {len(names)} classes: {shown}")
    print(f"preprocessing: {pre.get('mode')}, crop {pre.get('crop')} of {pre.get('resize')}")
    if isinstance(lineage, dict):
        origin = describe_lineage(lineage)
    else:
        origin = "trained from random weights" if predictor.source.endswith(".safetensors") else "torchvision weights file"
    print(f"lineage: {origin}")
    print()
    print(format_summary(summary_rows(predictor.model, input_size=int(pre.get("crop", 224)))))
    return 0

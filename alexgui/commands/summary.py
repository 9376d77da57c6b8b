"""`alexgui summary`: the layers of a network, their output shapes and parameter counts."""

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


def run(args: argparse.Namespace) -> int:
    import torch

    from alexgui.config import ModelConfig
    from alexgui.engine.model.networks import build_model
    from alexgui.engine.model.summary import format_summary, summary_rows

    # On the meta device: shapes and parameter counts without allocating or initialising a weight, so
    # even 100,000 classes (1.6 GB of fc8 weights) take no memory and no time.
    with torch.device("meta"):
        model = build_model(ModelConfig(arch=args.arch, num_classes=args.classes))
    print(format_summary(summary_rows(model)))
    return 0

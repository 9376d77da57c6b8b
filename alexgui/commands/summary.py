"""`alexgui summary`: the layers of a network, their output shapes and parameter counts."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="print the layers, output shapes and parameter counts")
    p.add_argument("--arch", choices=["paper", "torchvision"], default="paper", help="network (default: paper)")
    p.add_argument("--classes", type=int, default=1000, help="number of classes (default 1000)")


def run(args: argparse.Namespace) -> int:
    from alexgui.config import ModelConfig
    from alexgui.engine.model.networks import build_model
    from alexgui.engine.model.summary import format_summary, summary_rows

    if args.classes < 2:
        print("alexgui summary: --classes must be at least 2", flush=True)
        return 2
    model = build_model(ModelConfig(arch=args.arch, num_classes=args.classes))
    print(format_summary(summary_rows(model)))
    return 0

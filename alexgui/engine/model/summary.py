"""A layer table: name, output shape and parameter count, measured by running a zero image through.

Shapes come from an actual forward pass (model.activations), not from arithmetic, so the table shows
what the network really does at the given input size (55x55 after conv1 at 224, 6x6 into fc6, ...).
For the paper model a layer's row covers both towers, labelled e.g. "conv1 (2 x 48)".
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from alexgui.engine.model.base import INPUT_SIZE, AlexNetBase


class SummaryRow(NamedTuple):
    layer: str  # display label, e.g. "conv1 (2 x 48)"
    shape: tuple[int, ...]  # output shape without the batch dimension
    params: int  # learned parameters of this layer (both towers together)


def summary_rows(model: AlexNetBase, input_size: int = INPUT_SIZE) -> list[SummaryRow]:
    """One row for the input and one per layer in model.layer_names(), in forward order."""
    first = next(model.parameters())
    x = torch.zeros(1, 3, input_size, input_size, device=first.device, dtype=first.dtype)
    names = model.layer_names()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model.activations(x, names)
    except RuntimeError as e:  # e.g. a feature map shrunk below the pooling window
        raise ValueError(f"{model.arch} AlexNet cannot run a {input_size}x{input_size} input: {e}") from None
    finally:
        model.train(was_training)
    rows = [SummaryRow("input", (3, input_size, input_size), 0)]
    for name in names:
        modules = model.layer_modules(name)
        params = sum(p.numel() for m in modules for p in m.parameters())
        rows.append(SummaryRow(_label(name, modules), tuple(outputs[name].shape[1:]), params))
    return rows


def _label(name: str, modules: list[nn.Module]) -> str:
    if len(modules) < 2:
        return name
    return f"{name} ({len(modules)} x {_width(modules[0])})"  # the towers are equally wide


def _width(module: nn.Module) -> int:
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    raise TypeError(f"no width for {type(module).__name__}")


def format_summary(rows: list[SummaryRow]) -> str:
    """A plain-text table; the last line is the total parameter count with thousands separators."""
    header = ("layer", "output shape", "parameters")
    body = [(r.layer, " x ".join(map(str, r.shape)), f"{r.params:,}") for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(3)]

    def line(cells: tuple[str, str, str]) -> str:
        return f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  {cells[2]:>{widths[2]}}"

    total = sum(r.params for r in rows)
    rule = "-" * (sum(widths) + 4)
    return "\n".join([line(header), rule, *map(line, body), rule, f"Total parameters: {total:,}"])

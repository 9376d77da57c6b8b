"""Where a conv unit looks: the receptive field of each position of conv1..conv5, in the crop's pixels.

Walked from the network's own modules (their kernel size, stride and padding), not from a table, so
the geometry follows the model: the paper net's conv1 is 11x11 at stride 4 with padding 2 (224 in, 55
out), each overlapping 3x3 pool at stride 2 widens the field by two of the previous jumps, conv5 sees
163 pixels at a jump of 16. Local response normalisation, ReLU and dropout do not move anything.

For a chain of (kernel k, stride s, padding p) layers the standard recursion gives, for each layer, the
field's size r, the jump j between neighbouring output positions, and the centre c0 of position 0:
    r' = r + (k - 1) j,   c0' = c0 + ((k - 1) / 2 - p) j,   j' = j s,   starting from r = j = 1, c0 = 0.
Position (y, x) then covers rows c0 + y j - (r - 1) / 2 ... c0 + y j + (r - 1) / 2 (pixel centres) of
the input; `box` returns it as [x0, y0, x1, y1) in pixel edges, clipped to the crop.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from alexgui.engine.model.base import AlexNetBase

CONV_UNITS = ("conv1", "conv2", "conv3", "conv4", "conv5")


@dataclass(frozen=True)
class Geometry:
    size: int  # r: the field's side in input pixels (before clipping at the borders)
    jump: int  # j: input pixels between neighbouring positions of the layer
    start: float  # c0: the centre of position 0, in input pixel coordinates (may lie in the padding)

    def box(self, row: int, col: int, crop: int) -> tuple[int, int, int, int]:
        """[x0, y0, x1, y1) of position (row, col), in the crop's pixels, clipped to 0..crop."""
        half = (self.size - 1) / 2
        y0 = self.start + row * self.jump - half
        x0 = self.start + col * self.jump - half
        clip = lambda v: int(min(max(round(v), 0), crop))  # noqa: E731 - four uses, one line
        return clip(x0), clip(y0), clip(x0 + self.size), clip(y0 + self.size)


def geometry(model: AlexNetBase, layer: str) -> Geometry:
    """The receptive field of `layer` (conv1..conv5) of either architecture."""
    if layer not in CONV_UNITS:
        raise ValueError(f"receptive fields are for {', '.join(CONV_UNITS)}, not {layer!r}")
    size, jump, start = 1, 1, 0.0
    for name, module in _path(model):
        k, s, p = _triple(module)
        size += (k - 1) * jump
        start += ((k - 1) / 2 - p) * jump
        jump *= s
        if name == layer:
            return Geometry(size, jump, start)
    raise ValueError(f"{layer} not found in the {model.arch} network")


def _path(model: AlexNetBase) -> list[tuple[str, nn.Module]]:
    """conv1, pool1, conv2, pool2, conv3, conv4, conv5 of the network (one tower: both are alike)."""
    towers = getattr(model, "towers", None)
    if towers is not None:  # the paper net: each tower holds its convs and one pooling module
        t = towers[0]
        return [("conv1", t.conv1), ("pool1", t.pool), ("conv2", t.conv2), ("pool2", t.pool),
                ("conv3", t.conv3), ("conv4", t.conv4), ("conv5", t.conv5)]  # fmt: skip
    path: list[tuple[str, nn.Module]] = []
    convs = 0
    for module in model.features:  # type: ignore[union-attr]  # torchvision's layout
        if isinstance(module, nn.Conv2d):
            convs += 1
            path.append((f"conv{convs}", module))
        elif isinstance(module, nn.MaxPool2d):
            path.append((f"pool{convs}", module))
    return path


def _triple(module: nn.Module) -> tuple[int, int, int]:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
        k, s, p = module.kernel_size, module.stride, module.padding
        first = lambda v: int(v[0] if isinstance(v, tuple) else v)  # noqa: E731 - square kernels throughout
        return first(k), first(s), first(p)
    raise TypeError(f"no geometry for {type(module).__name__}")

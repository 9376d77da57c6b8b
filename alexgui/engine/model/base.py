"""AlexNet as in the paper (two towers) and torchvision's single-tower variant.

Both models share one interface (AlexNetBase) so the trainer, the GUI and the exporters need not care
which one they hold:

    forward(x)            logits; x is (B, 3, 224, 224) float
    forward_features(x)   fc7 after its activation, (B, 4096): the paper's retrieval vector (Figure 4)
    forward_head(f)       fc8 on such features (no dropout here, so features -> logits is deterministic;
                          the paper model's forward drops out fc7 in training, between the two)
    layer_names()         names accepted by activations(), in forward order
    activations(x, names) {name: tensor} for the requested layers
    kernels(layer)        conv weights (out, in, kh, kw); paper: tower 0's kernels first
    kernel_towers(layer)  which tower each output kernel belongs to

Layer names for activations(): "convN" is the output of conv layer N after its activation (ReLU or
tanh); "normN" the output of local response normalisation (paper model with LRN on only); "poolN" the
output of max pooling; "fc6"/"fc7" the fully connected layers after their activation and before dropout;
"fc8" the logits (before softmax). For the paper model every activation is both towers concatenated
along the channel/unit axis, tower 0 first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

# The paper says 224x224 input and 55x55 after conv1 (11x11, stride 4), which only works out for 227.
# We keep 224 and pad conv1 by 2, as torchvision does: (224 + 2*2 - 11) // 4 + 1 = 55.
CONV1_PADDING = 2
INPUT_SIZE = 224

# Paper, section 5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fully
# connected layers ("accelerates the early stages of learning by providing the ReLUs with positive
# inputs"), 0 in the remaining layers.
INIT_WEIGHT_STD = 0.01
LAYERS_WITH_BIAS_ONE = frozenset({"conv2", "conv4", "conv5", "fc6", "fc7"})

FEATURE_DIM = 4096
POOL5_SIZE = (6, 6)  # fc6 always sees 6x6x256; AdaptiveAvgPool2d is the identity at 224 input

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")

Tap = Callable[[str, Tensor], None]


def no_tap(name: str, x: Tensor) -> None:
    pass


def activation_layer(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "tanh":
        return nn.Tanh()
    raise ValueError(f"activation must be 'relu' or 'tanh', got {kind!r}")


def max_pool_layer(kind: str) -> nn.MaxPool2d:
    if kind == "overlapping":
        return nn.MaxPool2d(kernel_size=3, stride=2)
    if kind == "non-overlapping":
        return nn.MaxPool2d(kernel_size=2, stride=2)
    raise ValueError(f"pooling must be 'overlapping' or 'non-overlapping', got {kind!r}")


class AlexNetBase(nn.Module):
    """The interface shared by both architectures (see the module docstring)."""

    arch: str
    num_classes: int

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def layer_names(self) -> list[str]:
        raise NotImplementedError

    def layer_modules(self, layer: str) -> list[nn.Module]:
        """The modules holding a layer's learned parameters (one per tower; none for pool/norm)."""
        raise NotImplementedError

    def _conv_weights(self, layer: str) -> list[Tensor]:
        raise NotImplementedError

    def _record(self, x: Tensor, wanted: set[str]) -> dict[str, Tensor]:
        """One forward pass keeping the activations named in `wanted`."""
        raise NotImplementedError

    def logits_and_towers(self, x: Tensor, layer: str) -> tuple[Tensor, list[Tensor]]:
        """The logits and one layer's activation per tower (paper: tower 0's, then tower 1's; torchvision:
        one), all in the autograd graph, so gradients with respect to the layer can be taken (Grad-CAM)."""
        if layer not in self.layer_names() or layer == "fc8":
            raise ValueError(f"no per-tower activation {layer!r}; valid: {', '.join(self.layer_names()[:-1])}")
        return self._record_towers(x, layer)

    def _record_towers(self, x: Tensor, layer: str) -> tuple[Tensor, list[Tensor]]:
        raise NotImplementedError

    def activations(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Run x through the net (in its current train/eval mode) and return the named activations."""
        valid = self.layer_names()
        unknown = [name for name in layers if name not in valid]
        if unknown:
            raise ValueError(f"unknown layer(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
        if not layers:
            return {}
        found = self._record(x, set(layers))
        return {name: found[name] for name in layers}

    def kernels(self, layer: str) -> Tensor:
        """A conv layer's weights, (out, in, kh, kw), detached copies; paper: tower 0's kernels first."""
        return torch.cat([w.detach() for w in self._conv_weights(layer)], dim=0)

    def kernel_towers(self, layer: str) -> list[int]:
        """The tower each output kernel of kernels(layer) belongs to (all 0 for a single tower)."""
        return [tower for tower, w in enumerate(self._conv_weights(layer)) for _ in range(w.shape[0])]

    def start_conv1_at(self, std: float) -> None:
        """Rescale a freshly initialised conv1 to N(0, std) weights where the network's initialisation is the
        paper's N(0, INIT_WEIGHT_STD); a network with another initialisation (torchvision's) keeps it."""

    def _check_conv_layer(self, layer: str) -> None:
        if layer not in CONV_LAYERS:
            raise ValueError(f"{layer!r} is not a conv layer; kernels exist for {', '.join(CONV_LAYERS)}")


def check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")

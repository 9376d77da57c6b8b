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

from alexgui.config import Activation, LrnFormula, ModelConfig, Pooling
from alexgui.engine.model.lrn import LocalResponseNorm
from alexgui.errors import AlexguiError

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


def _no_tap(name: str, x: Tensor) -> None:
    pass


def _activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "tanh":
        return nn.Tanh()
    raise ValueError(f"activation must be 'relu' or 'tanh', got {kind!r}")


def _max_pool(kind: str) -> nn.MaxPool2d:
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

    def _check_conv_layer(self, layer: str) -> None:
        if layer not in CONV_LAYERS:
            raise ValueError(f"{layer!r} is not a conv layer; kernels exist for {', '.join(CONV_LAYERS)}")


class Tower(nn.Module):
    """One half of the paper's net (one GPU in 2012): its own conv1..conv5, fc6 and fc7.

    The tower computes its stages; it never sees the other tower. PaperAlexNet feeds the cross-tower
    stages (conv3, fc6, fc7) with both towers' outputs concatenated.
    """

    def __init__(
        self,
        activation: Activation = "relu",
        lrn: bool = True,
        lrn_formula: LrnFormula = "paper",
        pooling: Pooling = "overlapping",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 48, kernel_size=11, stride=4, padding=CONV1_PADDING)
        self.conv2 = nn.Conv2d(48, 128, kernel_size=5, padding=2)  # own tower's conv1 only
        self.conv3 = nn.Conv2d(2 * 128, 192, kernel_size=3, padding=1)  # both towers' conv2
        self.conv4 = nn.Conv2d(192, 192, kernel_size=3, padding=1)  # own tower's conv3 only
        self.conv5 = nn.Conv2d(192, 128, kernel_size=3, padding=1)  # own tower's conv4 only
        self.fc6 = nn.Linear(2 * 128 * POOL5_SIZE[0] * POOL5_SIZE[1], 2048)  # both towers' conv5
        self.fc7 = nn.Linear(2 * 2048, 2048)  # both towers' fc6
        # Parameter-free pieces live in each tower so a tower placed on its own device is self-contained.
        self.act = _activation(activation)
        # LRN sums over adjacent kernel maps of this tower only: in the paper each GPU normalised its own.
        self.norm = LocalResponseNorm(formula=lrn_formula) if lrn else nn.Identity()
        self.has_lrn = lrn
        self.pool = _max_pool(pooling)
        self.avgpool = nn.AdaptiveAvgPool2d(POOL5_SIZE)
        self.drop = nn.Dropout(dropout)

    @property
    def device(self) -> torch.device:
        return self.conv1.weight.device

    def conv1_to_pool2(self, image: Tensor, tap: Tap = _no_tap) -> Tensor:
        x = self.act(self.conv1(image))
        tap("conv1", x)
        if self.has_lrn:
            x = self.norm(x)
            tap("norm1", x)
        x = self.pool(x)
        tap("pool1", x)
        x = self.act(self.conv2(x))
        tap("conv2", x)
        if self.has_lrn:
            x = self.norm(x)
            tap("norm2", x)
        x = self.pool(x)
        tap("pool2", x)
        return x

    def conv3_to_pool5(self, both_pool2: Tensor, tap: Tap = _no_tap) -> Tensor:
        x = self.act(self.conv3(both_pool2))
        tap("conv3", x)
        x = self.act(self.conv4(x))
        tap("conv4", x)
        x = self.act(self.conv5(x))
        tap("conv5", x)
        x = self.pool(x)
        tap("pool5", x)
        # flatten, not view: the tensor may be channels_last. Each tower flattens its own (C, H, W), so
        # the concatenation of both is the flattened concatenation of their channels, tower 0 first.
        return self.avgpool(x).flatten(1)

    def fc6_stage(self, both_pool5: Tensor, tap: Tap = _no_tap) -> Tensor:
        x = self.act(self.fc6(both_pool5))
        tap("fc6", x)
        return self.drop(x)

    def fc7_stage(self, both_fc6: Tensor, tap: Tap = _no_tap) -> Tensor:
        x = self.act(self.fc7(both_fc6))
        tap("fc7", x)
        # fc7's dropout is applied by PaperAlexNet.forward before fc8, so that forward_features returns
        # the undropped retrieval vector.
        return x


class PaperAlexNet(AlexNetBase):
    """The paper's two-tower AlexNet: 60,965,224 parameters at 1000 classes."""

    arch = "paper"

    def __init__(
        self,
        num_classes: int = 1000,
        activation: Activation = "relu",
        lrn: bool = True,
        lrn_formula: LrnFormula = "paper",
        pooling: Pooling = "overlapping",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_num_classes(num_classes)
        self.num_classes = num_classes
        self.has_lrn = lrn
        device = torch.get_default_device()
        # Built without storage, then filled once with the paper's init: PyTorch's default init of
        # 61M parameters would be thrown away at once and costs more than the paper's.
        with torch.device("meta"):
            self.towers = nn.ModuleList(
                [Tower(activation, lrn, lrn_formula, pooling, dropout) for _ in range(2)]
            )
            self.fc8 = nn.Linear(FEATURE_DIM, num_classes)  # both towers' fc7 (2 x 2048)
        self.drop = nn.Dropout(dropout)  # on fc7's output before fc8
        self.to_empty(device=device)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The paper's initialisation (see INIT_WEIGHT_STD and LAYERS_WITH_BIAS_ONE)."""
        for name in self.layer_names():
            for module in self.layer_modules(name):
                module.weight.normal_(0.0, INIT_WEIGHT_STD)
                module.bias.fill_(1.0 if name in LAYERS_WITH_BIAS_ONE else 0.0)

    def _exchange(self, h0: Tensor, h1: Tensor) -> tuple[Tensor, Tensor]:
        """The only place the towers meet: both towers' outputs, tower 0 first, as each tower's input.

        With the towers on different devices each tower gets the concatenation on its own device; on one
        device it is made once and shared.
        """
        d0, d1 = self.towers[0].device, self.towers[1].device
        both0 = torch.cat([h0.to(d0, non_blocking=True), h1.to(d0, non_blocking=True)], dim=1)
        if d1 == d0:
            return both0, both0
        return both0, torch.cat([h0.to(d1, non_blocking=True), h1.to(d1, non_blocking=True)], dim=1)

    def _features(self, x: Tensor, taps: Sequence[Tap]) -> Tensor:
        """conv1 .. fc7: each stage runs once per tower; _exchange joins the towers between stages."""
        t0, t1 = self.towers
        tap0, tap1 = taps
        h0, h1 = t0.conv1_to_pool2(x.to(t0.device), tap0), t1.conv1_to_pool2(x.to(t1.device), tap1)
        in0, in1 = self._exchange(h0, h1)
        h0, h1 = t0.conv3_to_pool5(in0, tap0), t1.conv3_to_pool5(in1, tap1)
        in0, in1 = self._exchange(h0, h1)
        h0, h1 = t0.fc6_stage(in0, tap0), t1.fc6_stage(in1, tap1)
        in0, in1 = self._exchange(h0, h1)
        h0, h1 = t0.fc7_stage(in0, tap0), t1.fc7_stage(in1, tap1)
        return self._exchange(h0, h1)[0]

    def forward_features(self, x: Tensor) -> Tensor:
        return self._features(x, (_no_tap, _no_tap))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc8(features.to(self.fc8.weight.device))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.drop(self.forward_features(x)))

    def _record(self, x: Tensor, wanted: set[str]) -> dict[str, Tensor]:
        per_tower: list[dict[str, Tensor]] = [{}, {}]

        def tap_for(store: dict[str, Tensor]) -> Tap:
            def tap(name: str, value: Tensor) -> None:
                if name in wanted:
                    store[name] = value

            return tap

        logits = self.forward_head(self.drop(self._features(x, [tap_for(d) for d in per_tower])))
        found = {
            name: torch.cat([value, per_tower[1][name].to(value.device)], dim=1)
            for name, value in per_tower[0].items()
        }
        found["fc8"] = logits
        return found

    def layer_names(self) -> list[str]:
        norm1, norm2 = (["norm1"], ["norm2"]) if self.has_lrn else ([], [])
        return [
            "conv1", *norm1, "pool1", "conv2", *norm2, "pool2",
            "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8",
        ]  # fmt: skip

    def layer_modules(self, layer: str) -> list[nn.Module]:
        if layer not in self.layer_names():
            raise ValueError(f"unknown layer {layer!r}; valid: {', '.join(self.layer_names())}")
        if layer == "fc8":
            return [self.fc8]
        if layer in CONV_LAYERS or layer in ("fc6", "fc7"):
            return [getattr(tower, layer) for tower in self.towers]
        return []

    def _conv_weights(self, layer: str) -> list[Tensor]:
        self._check_conv_layer(layer)
        return [getattr(tower, layer).weight for tower in self.towers]


# torchvision.models.alexnet's module indices, named as in the paper.
_TV_FEATURE_NAMES = {
    1: "conv1", 2: "pool1", 4: "conv2", 5: "pool2", 7: "conv3", 9: "conv4", 11: "conv5", 12: "pool5",
}  # fmt: skip
_TV_CLASSIFIER_NAMES = {2: "fc6", 5: "fc7", 6: "fc8"}
_TV_CONV_INDEX = {"conv1": 0, "conv2": 3, "conv3": 6, "conv4": 8, "conv5": 10}
_TV_FC_INDEX = {"fc6": 1, "fc7": 4, "fc8": 6}


class TorchvisionAlexNet(AlexNetBase):
    """torchvision's single-tower AlexNet (64-192-384-256-256, no LRN): 61,100,840 parameters.

    Module names match torchvision.models.alexnet (features.*, avgpool, classifier.*), so torchvision's
    ImageNet state_dict loads as is. Initialisation is torchvision's (PyTorch's defaults), so a model
    built here trains like torchvision's reference recipe.
    """

    arch = "torchvision"

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        _check_num_classes(num_classes)
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=CONV1_PADDING),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(POOL5_SIZE)
        # torchvision drops out *before* fc6 and fc7 (not after fc7), so forward is exactly
        # forward_head(forward_features(x)).
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * POOL5_SIZE[0] * POOL5_SIZE[1], 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(FEATURE_DIM, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier[:6](x)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.classifier[6](features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def _record(self, x: Tensor, wanted: set[str]) -> dict[str, Tensor]:
        found: dict[str, Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if _TV_FEATURE_NAMES.get(index) in wanted:
                found[_TV_FEATURE_NAMES[index]] = x
        x = self.avgpool(x).flatten(1)
        for index, module in enumerate(self.classifier):
            x = module(x)
            if _TV_CLASSIFIER_NAMES.get(index) in wanted:
                found[_TV_CLASSIFIER_NAMES[index]] = x
        return found

    def layer_names(self) -> list[str]:
        return [*_TV_FEATURE_NAMES.values(), *_TV_CLASSIFIER_NAMES.values()]

    def layer_modules(self, layer: str) -> list[nn.Module]:
        if layer not in self.layer_names():
            raise ValueError(f"unknown layer {layer!r}; valid: {', '.join(self.layer_names())}")
        if layer in _TV_CONV_INDEX:
            return [self.features[_TV_CONV_INDEX[layer]]]
        if layer in _TV_FC_INDEX:
            return [self.classifier[_TV_FC_INDEX[layer]]]
        return []

    def _conv_weights(self, layer: str) -> list[Tensor]:
        self._check_conv_layer(layer)
        return [self.features[_TV_CONV_INDEX[layer]].weight]


class WeightsError(AlexguiError, ValueError):
    """A state_dict that does not fit the model; the message names the source and every problem."""


def load_torchvision_weights(
    model: TorchvisionAlexNet, state_dict: dict[str, Tensor], source: str = "state_dict"
) -> None:
    """Load torchvision.models.alexnet weights (e.g. its ImageNet state_dict) into `model`.

    Raises WeightsError naming `source` and the missing keys, unexpected keys and wrong shapes.
    """
    if not isinstance(model, TorchvisionAlexNet):
        raise TypeError(f"{source}: torchvision weights need a TorchvisionAlexNet, got {type(model).__name__}")
    expected = model.state_dict()
    problems = []
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, Tensor))
    if not_tensors:
        problems.append(f"values that are not tensors: {', '.join(not_tensors)}")
    missing = sorted(set(expected) - set(state_dict))
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    unexpected = sorted(set(state_dict) - set(expected))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    for key in sorted(set(expected) & set(state_dict)):
        value = state_dict[key]
        if isinstance(value, Tensor) and value.shape != expected[key].shape:
            problems.append(
                f"{key} has shape {tuple(value.shape)}, the model expects {tuple(expected[key].shape)}"
            )
    head = state_dict.get("classifier.6.weight")
    if isinstance(head, Tensor) and head.ndim == 2 and head.shape[0] != model.num_classes:
        problems.append(
            f"the weights are for {head.shape[0]} classes, the model has {model.num_classes}: "
            f"build it with num_classes={head.shape[0]}"
        )
    if problems:
        raise WeightsError(f"{source}: not torchvision AlexNet weights for this model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")


def build_model(cfg: ModelConfig) -> AlexNetBase:
    """The model a ModelConfig describes.

    The torchvision architecture is kept exactly torchvision's: it has no LRN (cfg.lrn and cfg.lrn_formula
    apply to the paper model only, as ModelConfig documents), and it refuses the activation and pooling
    ablations instead of silently ignoring them.
    """
    if cfg.arch == "paper":
        return PaperAlexNet(
            num_classes=cfg.num_classes,
            activation=cfg.activation,
            lrn=cfg.lrn,
            lrn_formula=cfg.lrn_formula,
            pooling=cfg.pooling,
            dropout=cfg.dropout,
        )
    if cfg.arch == "torchvision":
        refused = []
        if cfg.activation != "relu":
            refused.append(f"activation={cfg.activation!r}")
        if cfg.pooling != "overlapping":
            refused.append(f"pooling={cfg.pooling!r}")
        if refused:
            raise ValueError(
                f"the torchvision architecture is torchvision's AlexNet exactly and cannot use "
                f"{', '.join(refused)}; use arch='paper' for the ablations"
            )
        return TorchvisionAlexNet(num_classes=cfg.num_classes, dropout=cfg.dropout)
    raise ValueError(f"unknown architecture {cfg.arch!r}; expected 'paper' or 'torchvision'")

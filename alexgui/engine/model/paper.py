"""The paper's two-tower AlexNet (section 3.5, Figure 2): each tower holds its half of every layer; the
towers meet only into conv3, fc6, fc7 and fc8, through a placement strategy (TowerExchange here, one per
device in placement.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alexgui.config import Activation, LrnFormula, Pooling
from alexgui.engine.model.base import (
    CONV1_PADDING,
    CONV_LAYERS,
    FEATURE_DIM,
    INIT_WEIGHT_STD,
    LAYERS_WITH_BIAS_ONE,
    POOL5_SIZE,
    AlexNetBase,
    Tap,
    activation_layer,
    check_num_classes,
    max_pool_layer,
    no_tap,
)
from alexgui.engine.model.lrn import LocalResponseNorm


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
        self.act = activation_layer(activation)
        # LRN sums over adjacent kernel maps of this tower only: in the paper each GPU normalised its own.
        self.norm = LocalResponseNorm(formula=lrn_formula) if lrn else nn.Identity()
        self.has_lrn = lrn
        self.pool = max_pool_layer(pooling)
        self.avgpool = nn.AdaptiveAvgPool2d(POOL5_SIZE)
        self.drop = nn.Dropout(dropout)

    @property
    def device(self) -> torch.device:
        return self.conv1.weight.device

    def conv1_to_pool2(self, image: Tensor, tap: Tap = no_tap) -> Tensor:
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

    def conv3_to_pool5(self, both_pool2: Tensor, tap: Tap = no_tap) -> Tensor:
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

    def fc6_stage(self, both_pool5: Tensor, tap: Tap = no_tap) -> Tensor:
        x = self.act(self.fc6(both_pool5))
        tap("fc6", x)
        return self.drop(x)

    def fc7_stage(self, both_fc6: Tensor, tap: Tap = no_tap) -> Tensor:
        x = self.act(self.fc7(both_fc6))
        tap("fc7", x)
        # fc7's dropout is applied by PaperAlexNet.forward before fc8, so that forward_features returns
        # the undropped retrieval vector.
        return x


class TowerExchange:
    """How the paper's towers run and meet: the strategy PaperAlexNet._features calls for every stage.

    This default serves a model on one device: stages run as they are, and the concatenation of both
    towers' outputs (tower 0 first) is made once and shared by both towers. placement.py's
    TwoTowerPlacement is the other strategy: one device per tower, every stage timed, and each tower
    given its own copy of every cross-tower input, with the bytes that cross counted.
    """

    def devices(self, model: PaperAlexNet) -> tuple[torch.device, torch.device]:
        t0, t1 = model.tower_pair()
        return t0.device, t1.device

    def inputs(self, x: Tensor, d0: torch.device, d1: torch.device) -> tuple[Tensor, Tensor]:
        """The image as each tower's input."""
        return x.to(d0), x.to(d1)

    def run(self, tower: int, device: torch.device, stage: Callable[..., Tensor], *args: Any) -> Tensor:
        """One tower's stage."""
        return stage(*args)

    def exchange(self, h0: Tensor, h1: Tensor, d0: torch.device, d1: torch.device, slots: int = 2) -> list[Tensor]:
        """Both towers' outputs, tower 0 first, as the input of each of the first `slots` towers."""
        both0 = torch.cat([h0.to(d0, non_blocking=True), h1.to(d0, non_blocking=True)], dim=1)
        if slots == 1:
            return [both0]
        if d1 == d0:
            return [both0, both0]
        return [both0, torch.cat([h0.to(d1, non_blocking=True), h1.to(d1, non_blocking=True)], dim=1)]


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
        check_num_classes(num_classes)
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
        # A plain attribute, not a Module: state_dict() keys stay towers.0.*, towers.1.*, fc8.*
        self.placement: TowerExchange = TowerExchange()
        self.to_empty(device=device)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The paper's initialisation (see INIT_WEIGHT_STD and LAYERS_WITH_BIAS_ONE)."""
        for name in self.layer_names():
            for module in self.layer_modules(name):
                weight, bias = module.weight, module.bias  # conv/fc parameters (Tensor | Module to mypy)
                assert isinstance(weight, Tensor) and isinstance(bias, Tensor)
                weight.normal_(0.0, INIT_WEIGHT_STD)
                bias.fill_(1.0 if name in LAYERS_WITH_BIAS_ONE else 0.0)

    @torch.no_grad()
    def start_conv1_at(self, std: float) -> None:
        """conv1's weights as N(0, std) draws: the same draws as the paper's, scaled, so the RNG stream (and
        every other layer) is what it would be; at the paper's std nothing is touched."""
        if std != INIT_WEIGHT_STD:
            for module in self.layer_modules("conv1"):
                weight = module.weight
                assert isinstance(weight, Tensor)
                weight.mul_(std / INIT_WEIGHT_STD)

    def tower_pair(self) -> tuple[Tower, Tower]:
        """towers[0] and towers[1], typed: to mypy an nn.ModuleList holds plain Modules."""
        t0, t1 = self.towers
        assert isinstance(t0, Tower) and isinstance(t1, Tower)
        return t0, t1

    def _features(self, x: Tensor, taps: Sequence[Tap]) -> Tensor:
        """conv1 .. fc7: each stage is issued for tower 0, then tower 1; the placement strategy runs the
        stages and joins the towers between them, where the paper connects them."""
        t0, t1 = self.tower_pair()
        tap0, tap1 = taps
        ex = self.placement
        d0, d1 = ex.devices(self)
        x0, x1 = ex.inputs(x, d0, d1)
        h0, h1 = ex.run(0, d0, t0.conv1_to_pool2, x0, tap0), ex.run(1, d1, t1.conv1_to_pool2, x1, tap1)
        in0, in1 = ex.exchange(h0, h1, d0, d1)
        h0, h1 = ex.run(0, d0, t0.conv3_to_pool5, in0, tap0), ex.run(1, d1, t1.conv3_to_pool5, in1, tap1)
        in0, in1 = ex.exchange(h0, h1, d0, d1)
        h0, h1 = ex.run(0, d0, t0.fc6_stage, in0, tap0), ex.run(1, d1, t1.fc6_stage, in1, tap1)
        in0, in1 = ex.exchange(h0, h1, d0, d1)
        h0, h1 = ex.run(0, d0, t0.fc7_stage, in0, tap0), ex.run(1, d1, t1.fc7_stage, in1, tap1)
        return ex.exchange(h0, h1, d0, d1, slots=1)[0]  # into fc8, on the first tower's device

    def forward_features(self, x: Tensor) -> Tensor:
        return self._features(x, (no_tap, no_tap))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc8(features.to(self.fc8.weight.device))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.drop(self.forward_features(x)))

    def _tapped_forward(self, x: Tensor, wanted: set[str]) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """The logits, and for each tower the activations named in `wanted`."""
        per_tower: list[dict[str, Tensor]] = [{}, {}]

        def tap_for(store: dict[str, Tensor]) -> Tap:
            def tap(name: str, value: Tensor) -> None:
                if name in wanted:
                    store[name] = value

            return tap

        logits = self.forward_head(self.drop(self._features(x, [tap_for(d) for d in per_tower])))
        return logits, per_tower

    def _record(self, x: Tensor, wanted: set[str]) -> dict[str, Tensor]:
        logits, per_tower = self._tapped_forward(x, wanted)
        found = {
            name: torch.cat([value, per_tower[1][name].to(value.device)], dim=1)
            for name, value in per_tower[0].items()
        }
        found["fc8"] = logits
        return found

    def _record_towers(self, x: Tensor, layer: str) -> tuple[Tensor, list[Tensor]]:
        logits, per_tower = self._tapped_forward(x, {layer})
        return logits, [per_tower[0][layer], per_tower[1][layer]]

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

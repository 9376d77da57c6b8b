"""torchvision's single-tower AlexNet (64-192-384-256-256, no LRN: the "one weird trick" variant), so that
the widely available ImageNet weights load; and loading such weights with every mismatch named."""

from __future__ import annotations

from torch import Tensor, nn

from alexgui.engine.model.base import (
    CONV1_PADDING,
    FEATURE_DIM,
    POOL5_SIZE,
    AlexNetBase,
    check_num_classes,
)
from alexgui.errors import AlexguiError

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
        check_num_classes(num_classes)
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

    def _record_towers(self, x: Tensor, layer: str) -> tuple[Tensor, list[Tensor]]:
        found = self._record(x, {layer, "fc8"})
        return found["fc8"], [found[layer]]

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
        conv = self.features[_TV_CONV_INDEX[layer]]
        assert isinstance(conv, nn.Conv2d)
        return [conv.weight]


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


def torchvision_model_from_state(state_dict: dict[str, Tensor], source: str = "state_dict") -> TorchvisionAlexNet:
    """A TorchvisionAlexNet with as many classes as the state dict's last layer, its weights loaded; WeightsError
    naming `source` when the dict is not torchvision AlexNet's (inference and fine-tuning both read such files)."""
    head = state_dict.get("classifier.6.weight")
    if not isinstance(head, Tensor) or head.ndim != 2:
        raise WeightsError(f"{source}: not torchvision AlexNet weights (no classifier.6.weight)")
    model = TorchvisionAlexNet(num_classes=int(head.shape[0]))
    load_torchvision_weights(model, state_dict, source=source)
    return model

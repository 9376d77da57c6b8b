"""build_model: the network a ModelConfig describes, the paper's (paper.py) or torchvision's
(torchvision_alexnet.py); both share the interface in base.py."""

from __future__ import annotations

from alexgui.config import ModelConfig
from alexgui.engine.model.base import AlexNetBase
from alexgui.engine.model.paper import PaperAlexNet
from alexgui.engine.model.torchvision_alexnet import TorchvisionAlexNet


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

"""Small generated datasets for tests: real image files with structure a network can learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexgui.config import RunConfig

# Distinct colours and stripe orientations so a few SGD steps can tell the classes apart.
_CLASS_STYLES = [
    ((220, 40, 40), "vertical"),
    ((40, 60, 220), "horizontal"),
    ((40, 190, 60), "vertical"),
    ((230, 200, 30), "horizontal"),
]


def make_image(class_index: int, seed: int, size: tuple[int, int] = (72, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    colour, orientation = _CLASS_STYLES[class_index % len(_CLASS_STYLES)]
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    coord = xx if orientation == "vertical" else yy
    stripes = (np.sin(coord * 0.6 + rng.uniform(0, 6.28)) > 0).astype(np.float32)
    base = np.array(colour, np.float32) * (0.55 + 0.45 * stripes[..., None])
    noise = rng.normal(0, 12, size=(h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def make_dataset(root: Path, classes: int = 2, train_per_class: int = 6, val_per_class: int = 2) -> Path:
    """root/train/<class>/*.png and root/val/<class>/*.png."""
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                make_image(c, seed=1000 * (split == "val") + 100 * c + i).save(folder / f"{i:03d}.png")  # same data every run
    return root


def tiny_config(data: Path, **train: object) -> RunConfig:
    cfg = RunConfig()
    cfg.data.data = str(data)
    cfg.data.workers = 0
    cfg.train.device = "cpu"  # not "auto": the tests' runs are the same on a machine with a GPU
    cfg.train.batch_size = 4
    cfg.train.epochs = 2
    cfg.train.checkpoint_minutes = 0
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def kaiming_init(model: torch.nn.Module) -> torch.nn.Module:
    """Kaiming-normal weights and zero biases in every conv and linear layer (in place; returned): unlike the
    paper's N(0, 0.01) start, every layer's activations then vary from image to image, as a trained net's do."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                torch.nn.init.zeros_(module.bias)
    return model

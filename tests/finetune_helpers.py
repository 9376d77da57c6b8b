"""A trained network to fine-tune and a dataset of other classes, for the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alexgui.config import RunConfig
from alexgui.engine.data.stats import DataStats
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.model.networks import build_model
from alexgui.engine.store.checkpoint import save_checkpoint
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.checkpoints import Position, checkpoint_meta, checkpoint_tensors
from alexgui.engine.training.schedule import PlateauSchedule
from tests.helpers import kaiming_init, make_dataset, make_image, tiny_config

NEW_CLASSES = {"leaf": 2, "sun": 3}  # the helpers' green vertical and yellow horizontal stripes


def small(cfg: RunConfig) -> RunConfig:
    cfg.data.crop = 64  # the paper network on a small centre crop of the 256x256 image: fast steps
    return cfg


def new_classes(root: Path, train_per_class: int = 8, val_per_class: int = 4) -> Path:
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name, style in NEW_CLASSES.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                make_image(style, seed=5000 + 1000 * (split == "val") + 100 * style + i).save(folder / f"{i:03d}.png")
    return root


def make_source_run(root: Path) -> Path:
    """A paper network's run folder whose best checkpoint tells class_0 from class_1.

    Made as the colour checkpoint of explore_helpers is, not by the training loop: a few hundred steps of
    the paper's recipe would be needed for its fc7 to carry signal, and what is tested here is what a
    fine-tune does with a network that has it. The conv and fc layers are Kaiming-initialised (their
    features then separate colours and stripes), fc8 is the nearest-class-mean readout of class_0's and
    class_1's fc7 features, and the checkpoint is written with the trainer's own schema."""
    data = make_dataset(root / "data", classes=2, train_per_class=4, val_per_class=1)
    cfg = small(tiny_config(data))
    cfg.model.num_classes = 2
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    kaiming_init(model)
    stats = DataStats(mean_image=np.full((256, 256, 3), 120.0, np.float32),
                      pca_eigvals=np.array([300.0, 20.0, 5.0], np.float32), pca_eigvecs=np.eye(3, dtype=np.float32))
    preprocess = Preprocess.from_stats(stats, crop=64)
    means = []
    with torch.no_grad():
        for c in range(2):
            u8 = np.stack([np.asarray(make_image(c, seed=70 + i).resize((256, 256))) for i in range(4)])
            means.append(model.forward_features(preprocess.center_batch(torch.from_numpy(u8))).mean(0))
        mu = torch.stack(means)
        model.fc8.weight.copy_(mu)
        model.fc8.bias.copy_(-(mu * mu).sum(1) / 2)
    run = RunDir.create(root / "run", cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    meta = checkpoint_meta(cfg, ["class_0", "class_1"], preprocess, Position(), 1, PlateauSchedule(lr=0.01))
    run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run.best_checkpoint, checkpoint_tensors(model, optimizer, preprocess), meta)
    return root / "run"



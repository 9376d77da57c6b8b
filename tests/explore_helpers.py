"""Shared pieces for the explorer tests (classify, retrieval, filters): small models and images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexgui import __version__
from alexgui.config import RunConfig
from alexgui.engine.data.stats import DataStats
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.inference.predict import Predictor, TorchPredictor
from alexgui.engine.model.networks import build_model
from alexgui.engine.store.checkpoint import save_checkpoint
from alexgui.engine.training.checkpoints import CHECKPOINT_FORMAT
from tests.helpers import kaiming_init

COLOURS = {"red": (210, 40, 40), "blue": (40, 60, 210)}


def colour_image(colour: str, seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A noisy, mostly solid image of one of COLOURS."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.array(COLOURS[colour], np.float32)
    pixels = base + rng.normal(0, 18, size=(h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_colour_folder(root: Path, per_class: int = 3, seed: int = 0) -> list[Path]:
    """root/red/*.png and root/blue/*.png; returns the files."""
    files = []
    for c, colour in enumerate(COLOURS):
        (root / colour).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = root / colour / f"{colour}_{i}.png"
            colour_image(colour, seed * 1000 + c * 100 + i).save(path)
            files.append(path)
    return files


def train_colour_checkpoint(path: Path, seed: int = 0) -> Path:
    """A paper-architecture checkpoint that tells red from blue, made the way the trainer saves one.

    The conv/fc weights are random (Kaiming init so the fc7 features carry signal); fc8 is fitted
    in closed form as a nearest-class-mean readout on the fc7 features of a few generated images,
    computed through the reference pipeline (Preprocess.center_batch + forward_features). Which class
    wins is therefore determined by the images, and a checkpoint round trip that loses the weights,
    the preprocessing or the class order gives wrong answers.
    """
    torch.manual_seed(seed)
    cfg = RunConfig()
    cfg.model.num_classes = 2
    model = build_model(cfg.model).eval()
    kaiming_init(model)
    stats = DataStats(
        mean_image=np.full((256, 256, 3), 120.0, np.float32),
        pca_eigvals=np.array([300.0, 20.0, 5.0], np.float32),
        pca_eigvecs=np.eye(3, dtype=np.float32),
    )
    preprocess = Preprocess.from_stats(stats)
    class_names = list(COLOURS)
    means = []
    with torch.no_grad():
        for c, colour in enumerate(class_names):
            u8 = np.stack([np.asarray(colour_image(colour, 50 + c * 10 + i).resize((256, 256))) for i in range(3)])
            feats = model.forward_features(preprocess.center_batch(torch.from_numpy(u8)))
            means.append(feats.mean(0))
        mu = torch.stack(means)  # (2, 4096)
        # argmax_c f.mu_c - |mu_c|^2/2  ==  argmin_c |f - mu_c|^2
        model.fc8.weight.copy_(mu)
        model.fc8.bias.copy_(-(mu * mu).sum(1) / 2)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(stats.to_tensors())
    meta = {
        "format": CHECKPOINT_FORMAT,
        "alexgui_version": __version__,
        "config": cfg.to_toml(),
        "arch": cfg.model.arch,
        "class_names": class_names,
        "preprocessing": preprocess.describe(),
        "epoch": 0,
        "batch": 0,
        "step": 0,
    }
    save_checkpoint(path, tensors, meta)
    return path


class MeanColourPredictor(Predictor):
    """A fast stand-in for GUI tests: features are the image's mean colour, tiled; 'red' vs 'blue'
    by which channel dominates. Deterministic and instant, so the tests exercise the panels."""

    arch = "fake"
    source = "mean-colour test predictor"

    def __init__(self, fingerprint: str = "fake-1", dim: int = 12) -> None:
        self.class_names = ["red", "blue"]
        self.fingerprint = fingerprint
        self.dim = dim
        self.calls = 0

    def predict_u8(self, u8, ten_crop=False):  # type: ignore[no-untyped-def]
        self.calls += 1
        x = np.asarray(u8, np.float32).reshape(len(u8), -1, 3).mean(1) / 255.0  # (B, 3)
        feats = np.tile(x, (1, self.dim // 3)).astype(np.float32)
        logits = np.stack([x[:, 0] - x[:, 2], x[:, 2] - x[:, 0]], axis=1) * 10
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32), feats


def small_torch_predictor(num_classes: int = 2) -> TorchPredictor:
    torch.manual_seed(0)
    cfg = RunConfig()
    cfg.model.num_classes = num_classes
    model = build_model(cfg.model)
    return TorchPredictor(model, Preprocess.imagenet_mean_std(), [f"c{i}" for i in range(num_classes)], "rand", "random model")

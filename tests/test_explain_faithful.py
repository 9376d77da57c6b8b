"""Faithfulness, measured (issue 15 item 4): on a paper-architecture model trained here on scenes whose
class is decided by one small object at a random place, Grad-CAM's and occlusion's peaks fall inside
the object, and every method's highest pixels matter more to the model than random ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alexgui.config import ModelConfig
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.inference.predict import TorchPredictor
from alexgui.engine.model.networks import build_model
from alexgui.engine.understand.explain import METHODS, explain
from alexgui.engine.understand.faithfulness import deletion_check

pytestmark = pytest.mark.xdist_group("explain-trained-model")  # one worker trains the model once

CLASSES = ["red disc", "blue square", "nothing"]
CROP_OFFSET = 16  # the 224 centre crop of a 256 image
HELD_OUT = 40  # object images (half discs, half squares)
# Occlusion's patch for these scenes: larger than the object (a disc 53 pixels across), so that some
# patch hides it whole. The model is confident: a partly hidden disc is still a disc, and a patch that
# hides only part of the object tells nothing.
PATCH, STRIDE = 72, 16


def scene(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 256x256 uint8 image of blocky grey texture with a red disc (label 0), a blue square (1) or
    nothing (2) somewhere inside the centre crop; and the object's mask in the crop's coordinates."""
    texture = np.kron(rng.normal(0, 1, (16, 16)), np.ones((16, 16)))
    image = 120 + 25 * texture[..., None] + rng.normal(0, 12, (256, 256, 1))
    image = np.repeat(image, 3, axis=2)
    mask = np.zeros((256, 256), bool)
    if label != 2:
        cy, cx = rng.integers(CROP_OFFSET + 30, CROP_OFFSET + 224 - 30, size=2)
        yy, xx = np.mgrid[:256, :256]
        if label == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= 26**2
        else:
            mask = (abs(yy - cy) <= 23) & (abs(xx - cx) <= 23)
        image[mask] = (210, 40, 40) if label == 0 else (40, 60, 210)
    crop_mask = mask[CROP_OFFSET : CROP_OFFSET + 224, CROP_OFFSET : CROP_OFFSET + 224]
    return np.clip(image, 0, 255).astype(np.uint8), crop_mask


def scenes(n: int, seed: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    made = [scene(i % 3, rng) for i in range(n)]
    return np.stack([m[0] for m in made]), [m[1] for m in made], np.arange(n) % 3


@pytest.fixture(scope="module")
def trained() -> TorchPredictor:
    """The paper's two-tower network trained for 80 steps of 16 fresh scenes: about 60 s on two CPU cores.

    With PyTorch's default initialisation and inputs scaled by ImageNet's mean and deviation, not the
    paper's N(0, 0.01) with biases of 1 on raw pixels: from the paper's start the network stays at
    chance for a few hundred steps on this task (tried: 3 seeds, learning rates 1e-4 and 3e-4, conv1
    started small), and this test is about the maps of a model that has learned, not the recipe. From
    this start it reached 1.0 held-out accuracy by step 60 for each of the seeds tried (0, 1, 2)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="paper", num_classes=len(CLASSES), dropout=0.0))
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.reset_parameters()
    preprocess = Preprocess.imagenet_mean_std()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(80):
        labels = rng.integers(0, len(CLASSES), 16)
        images = np.stack([scene(int(c), rng)[0] for c in labels])
        logits = model(preprocess.center_batch(torch.from_numpy(images)))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return TorchPredictor(model.eval(), preprocess, CLASSES, "trained-here", "scene model")


@pytest.fixture(scope="module")
def held_out(trained: TorchPredictor) -> list[tuple[np.ndarray, np.ndarray, int]]:
    images, masks, labels = scenes(HELD_OUT * 3 // 2, seed=1)
    probs, _ = trained.predict_u8(images)
    accuracy = float((probs.argmax(1) == labels).mean())
    assert accuracy >= 0.95, f"the scene model did not learn its task (held-out accuracy {accuracy:.2f})"
    return [(u8, m, int(c)) for u8, m, c in zip(images, masks, labels) if c != 2]


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_the_peak_falls_inside_the_object_that_decides_the_class(trained, held_out, method) -> None:
    inside = 0
    for u8, mask, label in held_out:
        e = explain(trained, u8, method, label, patch=PATCH, stride=STRIDE)
        assert e.map.shape == mask.shape
        inside += bool(mask[e.peak])
    assert inside >= 0.9 * len(held_out), f"{method}: the peak was inside the object for {inside} of {len(held_out)}"


def test_a_blank_scene_gives_occlusion_nothing_to_find(trained) -> None:
    """The counter-check: with no object, no patch changes the "nothing" answer much."""
    u8, _ = scene(2, np.random.default_rng(7))
    e = explain(trained, u8, "occlusion", CLASSES.index("nothing"), patch=PATCH, stride=STRIDE)
    assert e.raw_max < 0.2


@pytest.mark.parametrize("method", METHODS)
def test_greying_the_maps_top_pixels_hurts_more_than_random_ones(trained, held_out, method) -> None:
    wins = 0
    for u8, _, label in held_out[:20]:
        e = explain(trained, u8, method, label, patch=PATCH, stride=STRIDE)
        wins += deletion_check(trained, u8, e).map_wins
    assert wins > 10, f"{method}: the map's top 10% hurt more than random pixels in {wins} of 20 images"

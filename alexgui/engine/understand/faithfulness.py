"""Does a map point at what the model uses? The deletion check: grey out (set to the mean image) the
fraction of the crop's pixels the map rates highest, and as many random pixels, and compare how much the
class's probability falls. A faithful map's pixels matter more than random ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from alexgui.engine.inference.predict import Predictor
from alexgui.engine.understand.explain import Explanation, torch_predictor

DELETION_FRACTION = 0.1


@dataclass
class Deletion:
    prob: float  # the class's probability on the intact crop
    top_drop: float  # its fall with the map's highest pixels greyed out
    random_drop: float  # its fall with as many random pixels greyed out

    @property
    def map_wins(self) -> bool:
        return self.top_drop > self.random_drop


def deletion_check(predictor: Predictor, u8: np.ndarray, explanation: Explanation,
                   fraction: float = DELETION_FRACTION, seed: int = 0) -> Deletion:
    """The deletion check of `explanation` (made from `u8`) for its class."""
    tp = torch_predictor(predictor)
    flat = explanation.map.reshape(-1)
    count = max(1, int(round(fraction * flat.size)))
    # Ties (a flat region of the map) broken at random, not by reading order.
    rng = np.random.default_rng(seed)
    jitter = rng.random(flat.size) * 1e-9
    top = np.argsort(-(flat + jitter), kind="stable")[:count]
    random = rng.choice(flat.size, size=count, replace=False)
    with tp.lock, torch.inference_mode():
        x = tp.preprocess.preprocess_image_u8(u8)
        batch = x.expand(3, -1, -1, -1).clone()
        for row, chosen in ((1, top), (2, random)):
            mask = torch.zeros(flat.size, dtype=torch.bool)
            mask[torch.from_numpy(chosen)] = True
            batch[row][:, mask.reshape(x.shape[-2:]).to(x.device)] = 0.0  # the mean image's value
        probs = torch.softmax(tp.model(batch).float(), dim=1)[:, explanation.class_index].cpu().tolist()
    return Deletion(probs[0], probs[0] - probs[1], probs[0] - probs[2])

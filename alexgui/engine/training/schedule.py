"""The paper's learning-rate schedule: divide by 10 when the validation error stops improving.

Section 5: "The heuristic which we followed was to divide the learning rate by 10 when the validation
error rate stopped improving with the current learning rate. The learning rate was initialized at
0.01 and reduced three times prior to termination." Its whole state is JSON so a checkpoint carries it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class PlateauSchedule:
    lr: float
    factor: float = 0.1
    patience: int = 3  # epochs without a new best before dropping
    max_drops: int = 3
    best: float = math.inf  # best validation top-1 error seen at any learning rate
    epochs_since_best: int = 0
    drops: int = 0

    def improves(self, val_error: float) -> bool:
        """Whether this validation error is a new best (the trainer then also writes best.safetensors)."""
        return val_error < self.best - 1e-9

    def update(self, val_error: float) -> float | None:
        """Record one epoch's validation error; return the new learning rate when it drops."""
        if self.improves(val_error):
            self.best = val_error
            self.epochs_since_best = 0
            return None
        self.epochs_since_best += 1
        if self.epochs_since_best >= self.patience and self.drops < self.max_drops:
            self.lr *= self.factor
            self.drops += 1
            self.epochs_since_best = 0
            return self.lr
        return None

    def state(self) -> dict[str, float | int | None]:
        """The fields as JSON values: an infinite `best` (nothing seen yet) is None."""
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_state(cls, state: dict) -> PlateauSchedule:
        values = dict(state)
        if values.get("best") is None:
            values["best"] = math.inf
        return cls(**values)

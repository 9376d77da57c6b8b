"""The paper's learning-rate schedule: divide by 10 when the validation error stops improving.

Section 5: "The heuristic which we followed was to divide the learning rate by 10 when the validation
error rate stopped improving with the current learning rate. The learning rate was initialized at
0.01 and reduced three times prior to termination." Its whole state is JSON so a checkpoint carries it.

The guard against small validation sets. On n validation images the top-1 error is measured to about
one binomial standard error, se = sqrt(p(1-p)/n): 0.14 on 12 images, 0.002 on ImageNet's 50,000. Rule
as written ("no new best for `patience` epochs"), a 12-image set's noise alone drops the rate about
three times in 16 epochs (measured in tests/test_schedule_guard.py), because the best is a lucky draw
that later epochs rarely beat, whether or not the network is still learning. So the patience is
counted in epochs in which a steady improvement could have shown: an error still falling by
`resolution` per epoch (one percentage point by default) needs se / resolution epochs to fall by one
standard error, so the schedule waits

    patience x max(1, se / resolution) epochs (rounded up),  p = (best errors + 1) / (n + 2)

without a new best before it drops (p is the rule of succession's estimate, so 0 errors of 12 is not
taken for certainty). With se <= resolution, which holds for any error from about 2,500 validation
images up (ImageNet's 50,000 included), the wait is the paper's `patience` exactly. On 12 images it is
23 to 44 epochs. `resolution` 0 turns the guard off: the paper's rule as written.

Why this guard and not another: a margin on the comparison (a new best only when it beats the old by
more than se) counts more epochs as "not improving" and drops sooner; a smoothed (EMA) error still
finds a noisy flat line flat, and drops on it; a fixed minimum of steps between drops does not know
how noisy the validation set is, so it either does nothing for 12 images or delays ImageNet. A small
set cannot tell a plateau from a slow fall; the wait lasts until it could.

Only the drop waits: `improves` (a new lowest error, which the trainer saves as best.safetensors) is the
paper's plain comparison, and a drop, when it comes, is the paper's division by 10.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# The smallest steady improvement of the top-1 error per epoch the schedule waits to be able to see.
DEFAULT_RESOLUTION = 0.01


@dataclass
class PlateauSchedule:
    lr: float
    factor: float = 0.1
    patience: int = 3  # epochs without a new best before dropping (stretched on small validation sets)
    max_drops: int = 3
    best: float = math.inf  # best validation top-1 error seen at any learning rate
    epochs_since_best: int = 0
    drops: int = 0
    # The guard (module docstring). Checkpoints written before it lack both fields and load with these
    # defaults; `val_images` 0 (not known yet) means the paper's patience until the next epoch's end.
    resolution: float = DEFAULT_RESOLUTION
    val_images: int = 0

    def __post_init__(self) -> None:
        # Checked here so that a crafted or damaged checkpoint is refused on loading, not at an epoch's end.
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, (int, float)):
            raise TypeError(f"resolution should be a number, not {self.resolution!r:.40}")
        if not 0 <= self.resolution <= 1:  # NaN fails too
            raise ValueError(f"resolution {self.resolution!r} is not between 0 and 1")
        if isinstance(self.val_images, bool) or not isinstance(self.val_images, int) or self.val_images < 0:
            raise ValueError(f"val_images {self.val_images!r:.40} is not a whole number >= 0")

    def improves(self, val_error: float) -> bool:
        """Whether this validation error is a new best (the trainer then also writes best.safetensors)."""
        return val_error < self.best - 1e-9

    def standard_error(self) -> float:
        """The binomial standard error of an error near the best, on this validation set; 0 when unknown."""
        n = self.val_images
        if n <= 0 or not math.isfinite(self.best):
            return 0.0
        p = min(max((self.best * n + 1) / (n + 2), 0.0), 1.0)
        return math.sqrt(p * (1 - p) / n)

    def wait(self) -> int:
        """Epochs without a new best before the rate drops: the paper's patience, stretched when this
        validation set's noise hides an improvement of `resolution` per epoch."""
        if self.resolution <= 0:
            return self.patience
        # The 1e-9 keeps a ratio that is a whole number in exact arithmetic from rounding up one more.
        return max(self.patience, math.ceil(self.patience * self.standard_error() / self.resolution - 1e-9))

    def update(self, val_error: float, val_images: int = 0) -> float | None:
        """Record one epoch's validation error, measured on `val_images` images (0: not known, the last
        count is kept); return the new learning rate when it drops."""
        if val_images > 0:
            self.val_images = int(val_images)
        if self.improves(val_error):
            self.best = val_error
            self.epochs_since_best = 0
            return None
        self.epochs_since_best += 1
        if self.epochs_since_best >= self.wait() and self.drops < self.max_drops:
            self.lr *= self.factor
            self.drops += 1
            self.epochs_since_best = 0
            return self.lr
        return None

    def drop_reason(self) -> str:
        """Why the rate just dropped, in words (the run's log and metrics)."""
        wait = self.wait()
        why = f"val top-1 error has not improved for {wait} epochs"
        if wait > self.patience:
            why += (
                f", not {self.patience}: {self.val_images} validation images measure it only to "
                f"±{self.standard_error():.3f}"
            )
        return f"{why} (drop {self.drops} of {self.max_drops})"

    def state(self) -> dict[str, float | int | None]:
        """The fields as JSON values: an infinite `best` (nothing seen yet) is None."""
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_state(cls, state: dict) -> PlateauSchedule:
        """The schedule a checkpoint saved; fields it lacks (older checkpoints) take their defaults, and
        an unknown field is a TypeError."""
        values = dict(state)
        if values.get("best") is None:
            values["best"] = math.inf
        return cls(**values)

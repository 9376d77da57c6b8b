"""Two numbers on conv1's RGB kernels (Figure 3): colour specificity and structure, per kernel and per tower.

They live here, below training/, because the training loop logs both with each kernel snapshot and
training may not import understand/ (the engine's layers); understand/kernels.py re-exports them
beside the tiles, where the Filters panel and the experiments find them.

- Colour specificity: the share of a kernel's energy off the grey axis (R = G = B). A grey kernel
  scores 0; a kernel whose channels sum to zero at every pixel (pure chroma) scores 1.
- Structure: how alike neighbouring pixels are. Figure 3's kernels are smooth oriented edges and
  colour blobs; a freshly initialised kernel is N(0, 0.01) noise. The score tells the two apart
  without looking: white noise scores about 0, smooth Gabor-like kernels (wavelengths 7 px and up)
  above 0.8, so the grid "turning into Figure 3" becomes a curve that can be logged and compared.

Everything takes a numpy array or a torch tensor and works in float64 numpy (96 kernels of 3x11x11
cost well under a millisecond), so the GUI thread, the training thread and tests share it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alexgui.engine.events import KernelSnapshot

_EPS = 1e-12
# A kernel whose energy after removing each channel's mean is below this share of its raw energy is
# flat (constant per channel, or all zero): float rounding of the mean leaves ~1e-32 of it, and a ratio
# of two such crumbs is meaningless, so it scores 0 (no structure) instead.
_FLAT = 1e-12


def as_numpy(weights: object) -> np.ndarray:
    """A numpy array or a torch tensor (without importing torch here) as a float32 numpy array."""
    if hasattr(weights, "detach"):
        weights = weights.detach().to("cpu").float().numpy()
    return np.asarray(weights, dtype=np.float32)


def _rgb_kernels(weights: object) -> np.ndarray:
    w = as_numpy(weights).astype(np.float64)
    if w.ndim != 4 or w.shape[1] != 3:
        raise ValueError(f"expected RGB kernels (N, 3, k, k), got shape {w.shape}")
    return w


def colour_specificity(weights: object) -> np.ndarray:
    """Per RGB kernel (N, 3, k, k): the fraction of its energy off the grey axis, in [0, 1].

    Each pixel's (r, g, b) splits into its grey part (the channel mean, repeated) and the rest (the
    chroma); the score is ||chroma||^2 / ||kernel||^2 over the whole kernel. It does not depend on
    the kernel's overall scale, so it can be compared across training steps.
    """
    w = _rgb_kernels(weights)
    chroma = w - w.mean(axis=1, keepdims=True)
    total = (w**2).reshape(w.shape[0], -1).sum(axis=1)
    off_grey = (chroma**2).reshape(w.shape[0], -1).sum(axis=1)
    return (off_grey / np.maximum(total, _EPS)).astype(np.float32)


def structure_scores(weights: object) -> np.ndarray:
    """Per RGB kernel (N, 3, h, w): neighbour correlation, about 0 for white noise, near 1 for smooth kernels.

    Each channel's mean is subtracted first (so a flat colour cast, which is no structure, adds
    nothing); then the mean of k[p]·k[q] over every horizontally and vertically adjacent pixel pair
    within a channel, divided by the mean of k² over all pixels. Scale-free, so scores compare across
    training steps. A Gabor kernel scores about 0.68 at a wavelength of 5 px, 0.85 at 7, 0.94 at 11
    (neighbours across its stripes correlate by cos(2π/wavelength), along them by nearly 1);
    independent noise scores -1/(h·w - 1) on average, the mean removal's doing. A kernel with nothing
    left after the means are removed (constant per channel, all zero) scores 0.
    """
    w = _rgb_kernels(weights)
    n, c, h, wd = w.shape
    centred = w - w.mean(axis=(2, 3), keepdims=True)
    horizontal = (centred[..., :, 1:] * centred[..., :, :-1]).sum(axis=(1, 2, 3))
    vertical = (centred[..., 1:, :] * centred[..., :-1, :]).sum(axis=(1, 2, 3))
    pairs = c * (h * (wd - 1) + (h - 1) * wd)
    if pairs == 0:  # 1x1 kernels have no neighbours: nothing to measure
        return np.zeros(n, np.float32)
    energy = (centred**2).mean(axis=(1, 2, 3))
    flat = energy <= _FLAT * (w**2).mean(axis=(1, 2, 3))
    score = ((horizontal + vertical) / pairs) / np.where(flat, 1.0, energy)
    return np.where(flat, 0.0, score).astype(np.float32)


def structure_score(weights: object) -> float:
    """The layer's structure: the median of structure_scores over its kernels (0.0 for no kernels).

    The median, not the mean: a handful of dead or saturated kernels should not move the figure.
    """
    scores = structure_scores(weights)
    return float(np.median(scores)) if scores.size else 0.0


def _by_tower(scores: np.ndarray, towers: Sequence[int]) -> dict[int, np.ndarray]:
    towers_arr = np.asarray(towers)
    if towers_arr.shape != scores.shape:
        raise ValueError(f"{len(towers_arr)} tower labels for {len(scores)} kernels")
    return {int(t): scores[towers_arr == t] for t in np.unique(towers_arr)}


def tower_specificity(weights: object, towers: Sequence[int]) -> dict[int, float]:
    """Mean colour specificity of each tower's kernels: {tower: score}."""
    return {t: float(s.mean()) for t, s in _by_tower(colour_specificity(weights), towers).items()}


def tower_structure(weights: object, towers: Sequence[int]) -> dict[int, float]:
    """Median structure score of each tower's kernels: {tower: score} (towers as in tower_specificity)."""
    return {t: float(np.median(s)) for t, s in _by_tower(structure_scores(weights), towers).items()}


def kernel_snapshot(step: int, epoch: int, conv1: object, towers: Sequence[int]) -> KernelSnapshot:
    """The metrics log's record of conv1 at a snapshot: both scores per tower (tower order) and overall."""
    colour, structure = tower_specificity(conv1, towers), tower_structure(conv1, towers)
    return KernelSnapshot(
        step,
        epoch,
        colour_specificity=[colour[t] for t in sorted(colour)],
        structure=[structure[t] for t in sorted(structure)],
        structure_all=structure_score(conv1),
    )

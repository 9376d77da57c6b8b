"""The Filters panel's words: each tower's heading with its scores (and their values at the first
snapshot), the deeper layers' heading, an enlarged tile's caption, and the scores' explanation."""

from __future__ import annotations

import numpy as np

from alexgui.engine.understand import kernels as F

TOWER_NAMES = {0: "Tower 0 (GPU 1)", 1: "Tower 1 (GPU 2)"}
SCORES_TIP = (
    "Colour specificity: the share of a kernel's energy off the grey axis (0 grey, 1 pure colour contrast), "
    "the tower's mean.\nStructure: how alike neighbouring pixels are, after each colour channel's mean is "
    "removed (0 white noise, as training starts; above 0.8 smooth edges and blobs as in Figure 3), the "
    "tower's median."
)


def tower_heading(
    tower: int,
    count: int,
    scores: tuple[float, float],
    first: tuple[float | None, float | None],
    single: bool,
    change_view: bool,
) -> str:
    """Name and count, then one line per score (colour specificity, structure), so each stays whole in a
    380-px dock; a score that has moved since the first snapshot shows that value beside it."""
    name = "All kernels (one tower)" if single else TOWER_NAMES.get(tower, f"Tower {tower}")
    view = " · <i>change since start</i>" if change_view else ""
    colour, structure = scores
    return (f"<b>{name}</b> · {count} kernels{view}<br>colour specificity <b>{score_text(colour)}</b>"
            f"{_first_snapshot(first[0], colour)}<br>structure <b>{score_text(structure)}</b>"
            f"{_first_snapshot(first[1], structure)}")


def channels_heading(layer: str, kernel: int, tower: int, shape: tuple[int, ...]) -> str:
    """A deeper layer's heading: one output kernel, its input channels on the red-blue scale."""
    return (
        f"<b>{layer}</b> kernel {kernel} (tower {tower}) · its {shape[1]} input channels, "
        f"{shape[2]}×{shape[3]} each · <span style='color:#c33'>red</span> positive, "
        f"<span style='color:#36c'>blue</span> negative"
    )


def _first_snapshot(first: float | None, now: float) -> str:
    """" (first snapshot 0.66)" after a score that has moved since then; nothing while it has not."""
    if first is None or abs(first - now) <= 1e-4:
        return ""
    return f" <span style='color:#888'>(first snapshot {score_text(first)})</span>"


def score_text(value: float) -> str:
    """Two decimals, and "0.00" for noise's -0.004 (structure can dip just below zero; "-0.00" reads as a glitch)."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def kernel_caption(layer: str, weights: np.ndarray, kernel: int, channel: int, tower: int) -> str:
    """The enlarged tile's caption: a conv1 kernel with its two scores, or a deeper kernel's input channel."""
    if layer == "conv1":
        score = float(F.colour_specificity(weights[kernel : kernel + 1])[0])
        smooth = float(F.structure_scores(weights[kernel : kernel + 1])[0])
        return conv1_kernel_text(kernel, tower, score, smooth, of=weights.shape[0])
    return f"{layer} kernel {kernel} · input channel {channel} · tower {tower}"


def conv1_kernel_text(kernel: int, tower: int, colour: float, structure: float, of: int | None = None) -> str:
    """A conv1 kernel's name, tower and two scores: a tile's tooltip, and (with `of`) its enlarged caption."""
    name = f"conv1 kernel {kernel}" + (f" of {of}" if of is not None else "")
    return f"{name} · tower {tower} · colour specificity {colour:.2f} · structure {structure:.2f}"

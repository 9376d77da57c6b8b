"""The fc7 map in colour: a colour per class (the commonest twenty, the rest grouped), and the map as a
PNG with its legend for `alexgui map --out`. The Feature space panel colours its points the same way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from alexgui.engine.understand.feature_space import METHOD_NAMES, FeatureMap

# Legend colours (matplotlib's tab10, then tab20's lighter shades); classes past these share OTHER.
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
]
OTHER = (150, 150, 150)
OTHER_NAME = "other classes"


def class_palette(classes: Sequence[str]) -> tuple[list[str], dict[str, tuple[int, int, int]]]:
    """The legend (the commonest classes, by count then name, and OTHER_NAME when there are more
    classes than colours) and an RGB colour for every class."""
    counts = Counter(classes)
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    shown = ranked if len(ranked) <= len(PALETTE) else ranked[: len(PALETTE) - 1]
    colours = {c: PALETTE[i] for i, c in enumerate(sorted(shown))}  # by name: a class keeps its colour as counts change
    for c in ranked[len(shown):]:
        colours[c] = OTHER
    legend = sorted(shown) + ([OTHER_NAME] if len(shown) < len(ranked) else [])
    return legend, colours


def map_png(fmap: FeatureMap, title: str | None = None) -> bytes:
    """The map as a PNG: one dot per image, coloured by class, with a legend."""
    from alexgui.engine.model.zoo import imagenet_names
    from alexgui.engine.understand.figures import agg_figure, png_bytes

    legend, colours = class_palette(fmap.classes)
    classes = np.array(fmap.classes, dtype=object)
    readable = imagenet_names()  # an ImageNet-style folder's wnids ("n01440764") by their names ("tench")
    fig = agg_figure(9.0, 7.0)
    ax = fig.add_subplot(1, 1, 1)
    size = 24 if len(fmap) <= 500 else 8 if len(fmap) <= 5000 else 2
    for name in legend:
        if name == OTHER_NAME:
            rows = np.array([colours[c] == OTHER for c in fmap.classes])
            colour = OTHER
        else:
            rows = classes == name
            colour = colours[name]
        ax.scatter(fmap.coords[rows, 0], fmap.coords[rows, 1], s=size, color=[v / 255 for v in colour],
                   label=f"{readable.get(name, name)} ({int(rows.sum())})", linewidths=0, alpha=0.85)
    ax.set_aspect("equal", adjustable="datalim")  # equal units, the axes filled
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{METHOD_NAMES[fmap.method]} of fc7: {len(fmap)} images"
                 + (f", seed {fmap.seed}" if fmap.method == "tsne" else ""))
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=max(1.0, 30 / size) ** 0.5,
              frameon=False)
    return png_bytes(fig)

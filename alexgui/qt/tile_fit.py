"""How many columns, and how large, a grid of tiles is drawn to fill the room a panel has.

A fixed 16 columns made conv1's 96 maps tiny in a wide panel and conv5's 256 maps run past a narrow
one. `fit_tiles` picks the columns that give the largest tiles with every tile in view; when even
the smallest legible tiles cannot all be in view, it fills the width and leaves the rest to scroll.
"""

from __future__ import annotations

import math

MIN_TILE = 20  # smaller than this a map is a grey speck: scroll instead
GAP = 2  # between tiles, as engine.understand.kernels.grid_layout draws them


def fit_tiles(count: int, width: int, height: int, max_tile: int, min_tile: int = MIN_TILE,
              gap: int = GAP) -> tuple[int, int]:
    """(tile side in pixels, columns) for `count` tiles in a width x height area.

    Never wider than `width` (unless one tile of `min_tile` is already wider); at most `max_tile`
    (tiles are not blown up past what their pixels can show)."""
    if count <= 0:
        return min_tile, 1
    width, height = max(width, 1), max(height, 1)
    best_side, best_cols = 0, 1
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        side = min((width + gap) // cols - gap, (height + gap) // rows - gap, max_tile)
        if side > best_side:
            best_side, best_cols = side, cols
    if best_side >= min(min_tile, max_tile):
        return best_side, best_cols
    # Not all in view at a legible size: as many columns of legible tiles as the width holds, then scroll.
    cols = max(1, min(count, (width + gap) // (min_tile + gap)))
    return max(min(max_tile, (width + gap) // cols - gap), min(min_tile, max_tile)), cols

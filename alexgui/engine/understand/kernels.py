"""Learned kernels and activations as images, and the two scores of Figure 3's kernels.

Qt-free: everything here takes and returns numpy arrays, so the GUI, the CLI and tests share it.

Figure 3 of the paper shows conv1's 96 kernels with tower 0's 48 above tower 1's 48: tower 0's are
"largely colour-agnostic", tower 1's "largely colour-specific". `colour_specificity` puts a number
on that: the share of a kernel's energy off the grey axis (R = G = B). `structure_scores` puts a
number on the figure forming at all: about 0 for the white noise training starts from, above 0.8 for
smooth edges and blobs. Both are defined in engine/model/kernel_scores.py (the training loop logs
them with each kernel snapshot, and training sits below this package) and offered here with the tiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alexgui.engine.model.kernel_scores import (
    as_numpy,
    colour_specificity,
    structure_score,
    structure_scores,
    tower_specificity,
    tower_structure,
)

# The scores are part of this module's interface (the Filters panel, the experiments read them here).
__all__ = [
    "GridLayout",
    "activation_tiles",
    "channel_tiles",
    "colour_specificity",
    "diverging",
    "grid_layout",
    "render_grid",
    "rgb_kernel_tiles",
    "structure_score",
    "structure_scores",
    "tower_specificity",
    "tower_structure",
]

# Tiles are scaled symmetrically around zero so a zero weight is mid grey and colour keeps its sign:
# positive red weight shows red, negative red weight shows cyan (as in the paper's figure).
_EPS = 1e-12


def _as_numpy(weights: object) -> np.ndarray:
    """Accept a numpy array or a torch tensor (without importing torch here)."""
    return as_numpy(weights)


def rgb_kernel_tiles(weights: object, common_scale: bool = False) -> np.ndarray:
    """(N, 3, k, k) RGB kernels -> (N, k, k, 3) uint8 tiles.

    Each tile is scaled by its own largest |weight| (so faint kernels stay visible) unless
    common_scale, when one scale serves all tiles and their relative strength shows.
    """
    w = _as_numpy(weights)
    if w.ndim != 4 or w.shape[1] != 3:
        raise ValueError(f"expected RGB kernels (N, 3, k, k), got shape {w.shape}")
    w = w.transpose(0, 2, 3, 1)  # (N, k, k, 3)
    if common_scale:
        scale = np.full((w.shape[0], 1, 1, 1), np.abs(w).max() + _EPS, dtype=np.float32)
    else:
        scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1).reshape(-1, 1, 1, 1) + _EPS
    return _to_u8(0.5 + 0.5 * w / scale)


def channel_tiles(weights: object, kernel: int, common_scale: bool = False) -> np.ndarray:
    """One output kernel of a deeper conv layer, (out, in, k, k) -> its `in` slices as
    (in, k, k, 3) uint8 tiles on a diverging blue-white-red map (negative blue, positive red).

    With common_scale the whole layer's largest |weight| sets the scale; otherwise this kernel's.
    """
    w = _as_numpy(weights)
    if w.ndim != 4:
        raise ValueError(f"expected conv kernels (out, in, k, k), got shape {w.shape}")
    if not 0 <= kernel < w.shape[0]:
        raise ValueError(f"kernel {kernel} out of range: the layer has {w.shape[0]} kernels")
    slices = w[kernel]
    scale = (np.abs(w).max() if common_scale else np.abs(slices).max()) + _EPS
    return diverging(slices / scale)


def diverging(values: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] (any shape) -> uint8 RGB (shape + (3,)): -1 blue, 0 white, +1 red."""
    v = np.clip(np.asarray(values, dtype=np.float32), -1.0, 1.0)[..., None]
    white = np.ones(3, np.float32)
    red = np.array([0.84, 0.15, 0.16], np.float32)
    blue = np.array([0.13, 0.4, 0.75], np.float32)
    out = np.where(v >= 0, white + v * (red - white), white - v * (blue - white))
    return _to_u8(out)


def activation_tiles(maps: object, common_scale: bool = False) -> np.ndarray:
    """(C, H, W) activations -> (C, H, W) uint8 grey tiles: each map from its own min to max
    (common_scale: the layer's min to max, so strong and weak channels compare)."""
    a = _as_numpy(maps)
    if a.ndim != 3:
        raise ValueError(f"expected activations (C, H, W), got shape {a.shape}")
    if common_scale:
        lo = np.full((a.shape[0], 1, 1), a.min(), np.float32)
        hi = np.full((a.shape[0], 1, 1), a.max(), np.float32)
    else:
        lo = a.reshape(a.shape[0], -1).min(axis=1).reshape(-1, 1, 1)
        hi = a.reshape(a.shape[0], -1).max(axis=1).reshape(-1, 1, 1)
    return _to_u8((a - lo) / np.maximum(hi - lo, _EPS))


@dataclass
class GridLayout:
    """Where each tile sits in a grid image, for drawing and for mapping a mouse position back."""

    tile: int  # tile side in pixels after upscaling
    gap: int  # pixels between tiles
    section_gap: int  # extra pixels between towers
    cols: int
    positions: list[tuple[int, int]]  # (x, y) of each tile's top-left corner, tile order
    width: int
    height: int
    section_tops: list[tuple[int, int]]  # (tower, y of the section's first row)

    def tile_at(self, x: float, y: float) -> int | None:
        """Index of the tile under (x, y), or None between tiles."""
        for i, (tx, ty) in enumerate(self.positions):
            if tx <= x < tx + self.tile and ty <= y < ty + self.tile:
                return i
        return None


def grid_layout(
    count: int,
    towers: Sequence[int] | None,
    tile_px: int,
    cols: int = 16,
    gap: int = 2,
    section_gap: int = 12,
) -> GridLayout:
    """Tiles grouped by tower, each tower's block starting on a new row below the previous one
    (Figure 3: tower 0's kernels above tower 1's). Tiles keep their order within a tower."""
    towers = list(towers) if towers is not None else [0] * count
    if len(towers) != count:
        raise ValueError(f"{len(towers)} tower labels for {count} tiles")
    positions: list[tuple[int, int]] = [(0, 0)] * count
    section_tops: list[tuple[int, int]] = []
    y = 0
    for tower in sorted(set(towers)):
        members = [i for i, t in enumerate(towers) if t == tower]
        section_tops.append((tower, y))
        for j, i in enumerate(members):
            row, col = divmod(j, cols)
            positions[i] = (col * (tile_px + gap), y + row * (tile_px + gap))
        rows = -(-len(members) // cols)
        y += rows * (tile_px + gap) - gap + section_gap
    height = max(y - section_gap, 0)
    width = min(count, cols) * (tile_px + gap) - gap if count else 0
    return GridLayout(tile_px, gap, section_gap, cols, positions, width, height, section_tops)


def render_grid(
    tiles: np.ndarray,
    layout: GridLayout,
    background: tuple[int, int, int] = (40, 40, 40),
) -> np.ndarray:
    """Paste (N, k, k, 3) or (N, k, k) uint8 tiles into one (H, W, 3) image, each upscaled to
    layout.tile by pixel repetition (no smoothing: an 11x11 kernel should look like 11x11 cells)."""
    if tiles.ndim == 3:
        tiles = np.repeat(tiles[..., None], 3, axis=3)
    n, kh, kw, _ = tiles.shape
    if n != len(layout.positions):
        raise ValueError(f"{n} tiles for a layout of {len(layout.positions)}")
    out = np.empty((max(layout.height, 1), max(layout.width, 1), 3), np.uint8)
    out[:] = background
    for tile, (x, y) in zip(tiles, layout.positions):
        big = _upscale(tile, layout.tile)
        out[y : y + layout.tile, x : x + layout.tile] = big
    return out


def _upscale(tile: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour resize of a (h, w, 3) tile to (side, side, 3)."""
    h, w = tile.shape[:2]
    rows = (np.arange(side) * h // side).clip(0, h - 1)
    cols = (np.arange(side) * w // side).clip(0, w - 1)
    return tile[rows][:, cols]


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)

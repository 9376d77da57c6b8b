"""Learned kernels and activations as images, and the colour-specificity score of Figure 3.

Qt-free: everything here takes and returns numpy arrays, so the GUI, the CLI and tests share it.

Figure 3 of the paper shows conv1's 96 kernels with tower 0's 48 above tower 1's 48: tower 0's are
"largely colour-agnostic", tower 1's "largely colour-specific". `colour_specificity` puts a number
on that: the share of a kernel's energy that lies off the grey axis (R = G = B). A grey kernel scores
0; a kernel whose channels sum to zero at every pixel (pure chroma) scores 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Tiles are scaled symmetrically around zero so a zero weight is mid grey and colour keeps its sign:
# positive red weight shows red, negative red weight shows cyan (as in the paper's figure).
_EPS = 1e-12


def _as_numpy(weights: object) -> np.ndarray:
    """Accept a numpy array or a torch tensor (without importing torch here)."""
    if hasattr(weights, "detach"):
        weights = weights.detach().to("cpu").float().numpy()
    arr = np.asarray(weights, dtype=np.float32)
    return arr


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


def colour_specificity(weights: object) -> np.ndarray:
    """Per RGB kernel (N, 3, k, k): the fraction of its energy off the grey axis, in [0, 1].

    Each pixel's (r, g, b) splits into its grey part (the channel mean, repeated) and the rest (the
    chroma); the score is ||chroma||^2 / ||kernel||^2 over the whole kernel. It does not depend on
    the kernel's overall scale, so it can be compared across training steps.
    """
    w = _as_numpy(weights).astype(np.float64)
    if w.ndim != 4 or w.shape[1] != 3:
        raise ValueError(f"expected RGB kernels (N, 3, k, k), got shape {w.shape}")
    chroma = w - w.mean(axis=1, keepdims=True)
    total = (w**2).reshape(w.shape[0], -1).sum(axis=1)
    off_grey = (chroma**2).reshape(w.shape[0], -1).sum(axis=1)
    return (off_grey / np.maximum(total, _EPS)).astype(np.float32)


def tower_specificity(weights: object, towers: Sequence[int]) -> dict[int, float]:
    """Mean colour specificity of each tower's kernels: {tower: score}."""
    scores = colour_specificity(weights)
    towers_arr = np.asarray(towers)
    if towers_arr.shape != scores.shape:
        raise ValueError(f"{len(towers_arr)} tower labels for {len(scores)} kernels")
    return {int(t): float(scores[towers_arr == t].mean()) for t in np.unique(towers_arr)}


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

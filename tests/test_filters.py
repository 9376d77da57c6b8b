"""Kernel tiles, the colour-specificity score and the tower-grouped grid (engine, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from alexgui.engine.understand import kernels as F


def _grey_kernels(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = rng.normal(size=(n, 1, 11, 11)).astype(np.float32)
    return np.repeat(grey, 3, axis=1)


def _coloured_kernels(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blob = np.exp(-np.linspace(-2, 2, 11)[:, None] ** 2 - np.linspace(-2, 2, 11)[None, :] ** 2)
    colours = rng.normal(size=(n, 3, 1, 1))
    return (colours * blob).astype(np.float32)


def test_grey_kernels_score_zero_and_coloured_ones_high() -> None:
    grey = F.colour_specificity(_grey_kernels(8))
    coloured = F.colour_specificity(_coloured_kernels(8))
    assert np.allclose(grey, 0.0, atol=1e-6)
    assert coloured.min() > 0.1
    assert coloured.mean() > grey.mean() + 0.3


def test_score_is_scale_free_and_bounded() -> None:
    w = _coloured_kernels(5)
    assert np.allclose(F.colour_specificity(w), F.colour_specificity(w * 1000), atol=1e-6)
    pure_chroma = np.zeros((1, 3, 2, 2), np.float32)
    pure_chroma[0, 0], pure_chroma[0, 1] = 1.0, -1.0  # channels sum to zero: no grey part at all
    assert F.colour_specificity(pure_chroma)[0] == pytest.approx(1.0)


def test_tower_scores_follow_the_towers() -> None:
    weights = np.concatenate([_grey_kernels(48), _coloured_kernels(48)])
    towers = [i // 48 for i in range(96)]
    scores = F.tower_specificity(weights, towers)
    assert set(scores) == {0, 1}
    assert scores[1] > scores[0] + 0.3
    with pytest.raises(ValueError, match="tower labels"):
        F.tower_specificity(weights, towers[:10])


def test_rgb_tiles_map_zero_to_grey_and_keep_sign() -> None:
    w = np.zeros((2, 3, 11, 11), np.float32)
    w[1, 0, 5, 5] = 2.0  # one strong positive red weight
    w[1, 0, 0, 0] = -2.0
    tiles = F.rgb_kernel_tiles(w)
    assert tiles.shape == (2, 11, 11, 3) and tiles.dtype == np.uint8
    assert np.all(np.abs(tiles[0].astype(int) - 128) <= 1)
    assert tiles[1, 5, 5, 0] == 255 and tiles[1, 0, 0, 0] == 0


def test_common_scale_keeps_relative_strength() -> None:
    w = _grey_kernels(2)
    w[1] *= 0.1
    own = F.rgb_kernel_tiles(w, common_scale=False)
    common = F.rgb_kernel_tiles(w, common_scale=True)
    spread = lambda t: int(t.max()) - int(t.min())  # noqa: E731
    assert spread(own[1]) > 200  # each tile stretched to its own range
    assert spread(common[1]) < spread(common[0]) / 4


def test_grid_groups_tower_zero_above_tower_one() -> None:
    towers = [i // 48 for i in range(96)]
    layout = F.grid_layout(96, towers, tile_px=10, cols=16)
    tops0 = [layout.positions[i][1] for i in range(48)]
    tops1 = [layout.positions[i][1] for i in range(48, 96)]
    assert max(tops0) + 10 < min(tops1)  # every tower-0 tile above every tower-1 tile
    for i, (x, y) in enumerate(layout.positions):
        assert layout.tile_at(x + 5, y + 5) == i
    assert layout.tile_at(layout.width + 5, 0) is None


def test_grid_follows_interleaved_tower_labels() -> None:
    towers = [i % 2 for i in range(8)]  # tiles alternate towers; the grid still groups them
    layout = F.grid_layout(8, towers, tile_px=4, cols=4)
    rows = {i: layout.positions[i][1] for i in range(8)}
    assert len({rows[i] for i in range(0, 8, 2)}) == 1 and len({rows[i] for i in range(1, 8, 2)}) == 1
    assert rows[0] < rows[1]


def test_render_grid_puts_each_tile_where_the_layout_says() -> None:
    tiles = np.zeros((3, 2, 2, 3), np.uint8)
    tiles[2] = (255, 0, 0)
    layout = F.grid_layout(3, [0, 0, 1], tile_px=6, cols=2)
    image = F.render_grid(tiles, layout)
    x, y = layout.positions[2]
    assert tuple(image[y + 3, x + 3]) == (255, 0, 0)
    assert tuple(image[layout.positions[0][1] + 3, layout.positions[0][0] + 3]) == (0, 0, 0)


def test_channel_tiles_and_activation_tiles() -> None:
    w = np.zeros((4, 6, 3, 3), np.float32)
    w[2, 1, 1, 1] = 1.0
    w[2, 3, 0, 0] = -1.0
    tiles = F.channel_tiles(w, 2)
    assert tiles.shape == (6, 3, 3, 3)
    assert tiles[1, 1, 1, 0] > tiles[1, 1, 1, 2]  # positive: red
    assert tiles[3, 0, 0, 2] > tiles[3, 0, 0, 0]  # negative: blue
    with pytest.raises(ValueError, match="out of range"):
        F.channel_tiles(w, 9)
    maps = np.stack([np.zeros((5, 5)), np.arange(25.0).reshape(5, 5)])
    grey = F.activation_tiles(maps)
    assert grey.shape == (2, 5, 5) and grey[1].max() == 255 and grey[1].min() == 0

"""Figure 3 forming: frames of a run's filter history as a PNG or an animated GIF (Pillow writes both).

Each frame is conv1's 96 kernels laid out as the paper's Figure 3 (tower 0's 48 above tower 1's 48,
each kernel scaled on its own, so faint early kernels stay visible), with a caption: the step and
epoch, and per tower its colour specificity and structure score (engine/model/kernel_scores.py), the
two numbers that say the towers are specialising and the kernels leaving noise behind.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from alexgui.engine.store.atomic import atomic_target
from alexgui.engine.store.filter_history import FilterHistoryError, FilterSnapshot, SnapshotRef, read_snapshot
from alexgui.engine.understand.kernels import grid_layout, render_grid, rgb_kernel_tiles, tower_specificity, tower_structure
from alexgui.errors import Cancelled

TILE = 33  # 11x11 kernels at 3 screen pixels per weight: the figure's look, 560 pixels wide
CAPTION_PX = 14
BACKGROUND = (32, 32, 36)
TEXT = (230, 230, 230)
MUTED = (160, 160, 170)
DEFAULT_FPS = 4.0


def caption_lines(snapshot: FilterSnapshot) -> list[str]:
    """What a frame says under its kernels: where in training, then each tower's two scores."""
    # The snapshot's epoch counts from 0 and is the one in progress: that many are complete.
    done = snapshot.epoch
    lines = [f"step {snapshot.step:,} · {done} epoch{'' if done == 1 else 's'} done"]
    colour = tower_specificity(snapshot.kernels, snapshot.towers)
    structure = tower_structure(snapshot.kernels, snapshot.towers)
    single = len(colour) == 1
    for tower in sorted(colour):
        name = "all kernels" if single else f"tower {tower}"
        lines.append(f"{name}: colour specificity {colour[tower]:.2f} · structure {structure[tower]:.2f}")
    return lines


def render_frame(snapshot: FilterSnapshot, tile: int = TILE) -> Image.Image:
    """One frame: the kernel grid above its caption, RGB."""
    tiles = rgb_kernel_tiles(snapshot.kernels)
    layout = grid_layout(len(tiles), snapshot.towers, tile_px=tile)
    grid = render_grid(tiles, layout, background=BACKGROUND)
    font = ImageFont.load_default(size=CAPTION_PX)
    lines = caption_lines(snapshot)
    pad, line_h = 10, CAPTION_PX + 6
    width = grid.shape[1] + 2 * pad
    height = grid.shape[0] + 2 * pad + line_h * len(lines) + pad // 2
    frame = Image.new("RGB", (width, height), BACKGROUND)
    frame.paste(Image.fromarray(grid), (pad, pad))
    draw = ImageDraw.Draw(frame)
    y = grid.shape[0] + pad + pad // 2
    for i, line in enumerate(lines):
        draw.text((pad, y + i * line_h), line, fill=TEXT if i == 0 else MUTED, font=font)
    return frame


def pick(refs: Sequence[SnapshotRef], step: int | None) -> SnapshotRef:
    """The frame at `step`, or the last one before it (the last frame when step is None)."""
    if not refs:
        raise ValueError("no snapshots")
    if step is None:
        return refs[-1]
    before = [r for r in refs if r.step <= step]
    return before[-1] if before else refs[0]


def save_png(ref: SnapshotRef, path: str | os.PathLike[str]) -> Path:
    """One frame as a PNG, written atomically."""
    frame = render_frame(read_snapshot(ref))
    with atomic_target(path) as tmp:
        frame.save(tmp, format="PNG")
    return Path(path)


def save_gif(
    refs: Sequence[SnapshotRef],
    path: str | os.PathLike[str],
    fps: float = DEFAULT_FPS,
    progress: Callable[[int, int], None] | None = None,
    skipped: list[str] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Every readable frame of `refs` into one looping GIF (the last frame held a second longer);
    returns the number of frames. A damaged snapshot is left out and named in `skipped`; `stop`
    cancels (Cancelled, nothing written)."""
    frames: list[Image.Image] = []
    for i, ref in enumerate(refs):
        if stop is not None and stop.is_set():
            raise Cancelled(f"the animation was cancelled after {i} of {len(refs)} frames")
        try:
            frames.append(render_frame(read_snapshot(ref)))
        except FilterHistoryError as e:
            if skipped is not None:
                skipped.append(str(e))
        if progress is not None:
            progress(i + 1, len(refs))
    if not frames:
        raise ValueError("none of the snapshots could be read")
    # All frames of a run share one size (the same kernels); a resumed run with another layer would
    # not, so each is fitted to the first.
    size = frames[0].size
    frames = [f if f.size == size else f.resize(size) for f in frames]
    palette = [f.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for f in frames]
    ms = max(20, int(round(1000 / max(fps, 0.1))))
    durations = [ms] * len(palette)
    durations[-1] = ms + 1000
    with atomic_target(path) as tmp:
        palette[0].save(tmp, format="GIF", save_all=True, append_images=palette[1:], duration=durations, loop=0,
                        optimize=False, disposal=1)
    return len(palette)


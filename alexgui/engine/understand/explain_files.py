"""An explanation as pictures and files: the map in colour over the crop, the side-by-side figure the app
and `alexgui explain` save (original | overlay, a caption and the colour scale), and the .npy map.
Every file is written atomically; a .npy holds a plain float32 array (no pickles, so loading runs no code)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from alexgui.engine.model.zoo import readable_class
from alexgui.engine.store.atomic import atomic_write_bytes
from alexgui.engine.understand.explain import METHOD_TITLES, Explanation
from alexgui.engine.understand.figures import png_of_image

COLORMAP = "turbo"  # perceptually ordered, unlike jet, and still the blue-to-red people read Grad-CAM in
GRADIENT_METHODS = frozenset({"guided-backprop", "saliency"})
# Gradient maps are a few bright pixels on near-zero: shown stretched so that this percentile is full
# colour (display only; the .npy keeps the map as computed).
GRADIENT_DISPLAY_PERCENTILE = 99.0
DEFAULT_OPACITY = 0.5
_GAP = 8
_CAPTION = 46


@lru_cache(maxsize=4)
def colormap_lut(name: str = COLORMAP) -> np.ndarray:
    """(256, 3) uint8 colours from low to high (matplotlib's colour map, imported only here)."""
    from matplotlib import colormaps

    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.ascontiguousarray((rgba[:, :3] * 255.0 + 0.5).astype(np.uint8))


def display_map(explanation: Explanation) -> np.ndarray:
    """The map as it is drawn, 0..1: gradient maps stretched (see GRADIENT_DISPLAY_PERCENTILE)."""
    m = np.clip(explanation.map, 0.0, 1.0)
    if explanation.method in GRADIENT_METHODS:
        top = float(np.percentile(m, GRADIENT_DISPLAY_PERCENTILE))
        if top > 0:
            m = np.clip(m / top, 0.0, 1.0)
    return m.astype(np.float32)


def overlay(explanation: Explanation, opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """(H, W, 3) uint8: the crop with the map's colours over it. Grad-CAM and occlusion cover the crop
    evenly; gradient maps, mostly near zero, are drawn in proportion to their value so that the photo
    shows where they are empty."""
    m = display_map(explanation)
    colours = colormap_lut()[np.round(m * 255.0).astype(np.intp)].astype(np.float32)
    opacity = float(np.clip(opacity, 0.0, 1.0))
    alpha = opacity * (m if explanation.method in GRADIENT_METHODS else np.ones_like(m))
    alpha = alpha[..., None]
    blended = explanation.crop.astype(np.float32) * (1.0 - alpha) + colours * alpha
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def caption(explanation: Explanation) -> str:
    row, col = explanation.peak
    name = readable_class(explanation.class_name)  # "tench (n01440764)" for a model trained on ImageNet folders
    return (f"{METHOD_TITLES[explanation.method]} · {name} {100 * explanation.prob:.1f}% · "
            f"peak at row {row}, column {col}")


def figure(explanation: Explanation, opacity: float = DEFAULT_OPACITY, title: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the crop and the overlay side by side, the caption and the colour scale below."""
    from PIL import Image, ImageDraw, ImageFont

    crop = explanation.crop
    h, w = crop.shape[:2]
    width = 2 * w + _GAP
    canvas = np.full((h + _CAPTION, width, 3), 255, dtype=np.uint8)
    canvas[:h, :w] = crop
    canvas[:h, w + _GAP :] = overlay(explanation, opacity)
    scale_left, scale_w = width - 160, 120
    ramp = colormap_lut()[np.linspace(0, 255, scale_w).astype(np.intp)]
    canvas[h + 26 : h + 36, scale_left : scale_left + scale_w] = ramp[None, :, :]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11)
    draw.text((4, h + 4), title if title is not None else caption(explanation), fill=(20, 20, 20), font=font)
    draw.text((scale_left - 28, h + 24), "low", fill=(90, 90, 90), font=font)
    draw.text((scale_left + scale_w + 4, h + 24), "high", fill=(90, 90, 90), font=font)
    if explanation.method == "occlusion":
        draw.text((4, h + 24), f"largest drop {100 * explanation.raw_max:.1f} points", fill=(90, 90, 90), font=font)
    return np.asarray(image)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def output_stems(paths: Sequence[str], method: str) -> list[str]:
    """A file stem per image, from its name and the method ("cat.gradcam"), made unique by a number
    when two images share a name ("cat.gradcam", "cat-2.gradcam")."""
    used: set[str] = set()
    stems = []
    for path in paths:
        base = Path(path).stem or "image"
        stem, n = base, 1
        while stem in used:  # "cat-2" may be another image's own name: the next free number then
            n += 1
            stem = f"{base}-{n}"
        used.add(stem)
        stems.append(f"{stem}.{method}")
    return stems


def write_explanation(folder: str | os.PathLike[str], stem: str, explanation: Explanation,
                      opacity: float = DEFAULT_OPACITY) -> tuple[Path, Path]:
    """STEM.png (the figure) and STEM.npy (the map) in `folder`; OSError when they cannot be written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    png, npy = out / f"{stem}.png", out / f"{stem}.npy"
    atomic_write_bytes(npy, npy_bytes(explanation.map))
    atomic_write_bytes(png, png_of_image(figure(explanation, opacity)))
    return png, npy

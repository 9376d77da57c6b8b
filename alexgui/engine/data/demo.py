"""The built-in demo dataset: ten classes of procedurally generated 256x256 images, seeded.

Made so that a few minutes of training show what the paper shows: first-layer kernels that become
oriented edge and colour detectors. Some class pairs differ ONLY in orientation (vertical vs horizontal
warm stripes), some ONLY in colour (vertical warm vs vertical cool stripes), some only in shape
(squares vs discs on the same textured backgrounds), and every image varies at random within its
class (frequency, phase, position, hue, brightness, background noise), so it cannot be memorised.

Created on first use under cache_root/demo-v1/ (train/<class>/*.jpg, val/<class>/*.jpg, README.txt,
manifest.json): generated into a temporary folder, then renamed, so a half-written dataset is never
used and a second call returns at once. JPEG at quality 90 keeps it small (about 40 MB) and fast to
write; the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from alexgui.engine.store.atomic import fsync_dir
from alexgui.errors import AlexguiError

VERSION = "demo-v1"
SEED = 2012
SIZE = 256
TRAIN_PER_CLASS = 120
VAL_PER_CLASS = 30
JPEG_QUALITY = 90
_STALE_TMP_SECONDS = 3600  # a temporary folder this old belongs to a crashed run
_CHUNK = 30  # images generated at once: bounds memory (30 x 256 x 256 x 3 float32 = 24 MB)

ProgressFn = Callable[[int, int], None]  # (images written, images in total)
# (rng, n) -> (n, 3, 256, 256) float32 in 0..1. Channel planes, not (n, H, W, 3): numpy's inner loops
# then run along image rows instead of over 3 channels, several times faster.
Generator = Callable[[np.random.Generator, int], np.ndarray]


class DemoError(AlexguiError):
    """The demo dataset folder exists but is not one this module finished writing."""


# ---- building blocks (all vectorised over a chunk of n images) -----------------------------------

# Pixel coordinates as a row and a column: expressions broadcast to full images only where they must.
_X = np.arange(SIZE, dtype=np.float32)[None, :]
_Y = np.arange(SIZE, dtype=np.float32)[:, None]


def _col(v: np.ndarray) -> np.ndarray:
    """(n,) per-image values -> (n, 1, 1) to broadcast over pixels."""
    return np.asarray(v, dtype=np.float32)[:, None, None]


def _hsv(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(n,) hue (0..1, wraps), saturation, value -> (n, 3) RGB in 0..1."""
    h = np.mod(h, 1.0) * 6.0
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h[:, None], 6.0)
    return (v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def _colours(rng: np.random.Generator, n: int, hue_lo: float, hue_hi: float) -> np.ndarray:
    return _hsv(rng.uniform(hue_lo, hue_hi, n), rng.uniform(0.6, 1.0, n), rng.uniform(0.6, 1.0, n))


def _any_colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two clearly different random colours per image (hues apart, one brighter)."""
    h = rng.uniform(0, 1, n)
    a = _hsv(h, rng.uniform(0.5, 1.0, n), rng.uniform(0.75, 1.0, n))
    b = _hsv(h + rng.uniform(0.3, 0.7, n), rng.uniform(0.5, 1.0, n), rng.uniform(0.15, 0.5, n))
    return a, b


def _mix(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """mask (n, H, W) in 0..1 (or broadcastable to it) picks colour a (n, 3) where 1 and b where 0."""
    m = np.broadcast_to(mask, (len(a), SIZE, SIZE))[:, None]
    b4 = b[:, :, None, None]
    return m * (a[:, :, None, None] - b4) + b4


def _gratings(rng: np.random.Generator, n: int, angle_deg: float, lo: tuple[float, float], hi: tuple[float, float]) -> np.ndarray:
    theta = np.deg2rad(angle_deg + rng.uniform(-8, 8, n))
    cycles = rng.uniform(5, 12, n)  # per image width
    phase = rng.uniform(0, 2 * np.pi, n)
    u = _X * _col(np.cos(theta)) + _Y * _col(np.sin(theta))
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * _col(cycles) * u / SIZE + _col(phase))
    sharp = _col(rng.uniform(1.0, 4.0, n))  # from sine to nearly square waves: soft and hard edges
    mask = np.clip((wave - 0.5) * sharp + 0.5, 0, 1)
    return _mix(mask, _colours(rng, n, *lo), _colours(rng, n, *hi))


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """(n, H, W) smooth random field in 0..1: a cells x cells grid interpolated bilinearly."""
    grid = rng.uniform(0, 1, (n, cells, cells)).astype(np.float32)
    src = np.linspace(0, cells - 1, SIZE, dtype=np.float32)
    i0 = np.floor(src).astype(int).clip(0, cells - 2)
    t = src - i0
    up = np.zeros((SIZE, cells), np.float32)  # interpolation matrix: out = up @ grid @ up.T
    up[np.arange(SIZE), i0] = 1 - t
    up[np.arange(SIZE), i0 + 1] = t
    return np.einsum("hc,ncd,wd->nhw", up, grid, up, optimize=True)


def _textured_background(rng: np.random.Generator, n: int) -> np.ndarray:
    a, b = _any_colours(rng, n)
    field = _smooth_noise(rng, n, int(rng.integers(4, 12)))
    return _mix(field * 0.6 + 0.2, b, a * 0.6)


# ---- the classes --------------------------------------------------------------------------------

_WARM = ((0.97, 1.03), (0.10, 0.16))  # red ... yellow
_COOL = ((0.55, 0.66), (0.30, 0.40))  # blue ... green


def stripes_vertical_warm(rng: np.random.Generator, n: int) -> np.ndarray:
    return _gratings(rng, n, 0.0, *_WARM)


def stripes_horizontal_warm(rng: np.random.Generator, n: int) -> np.ndarray:
    return _gratings(rng, n, 90.0, *_WARM)


def stripes_vertical_cool(rng: np.random.Generator, n: int) -> np.ndarray:
    return _gratings(rng, n, 0.0, *_COOL)


def stripes_diagonal_cool(rng: np.random.Generator, n: int) -> np.ndarray:
    return _gratings(rng, n, 45.0, *_COOL)


def checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    cell = _col(rng.uniform(14, 40, n))
    theta = np.deg2rad(rng.uniform(-10, 10, n))
    c, s = _col(np.cos(theta)), _col(np.sin(theta))
    u = (_X * c + _Y * s) / cell + _col(rng.uniform(0, 2, n))
    v = (-_X * s + _Y * c) / cell + _col(rng.uniform(0, 2, n))
    mask = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    return _mix(mask, *_any_colours(rng, n))


def concentric_rings(rng: np.random.Generator, n: int) -> np.ndarray:
    cy, cx = _col(rng.uniform(60, 196, n)), _col(rng.uniform(60, 196, n))
    r = np.sqrt((_X - cx) ** 2 + (_Y - cy) ** 2)
    wave = np.sin(2 * np.pi * r / _col(rng.uniform(14, 32, n)) + _col(rng.uniform(0, 2 * np.pi, n)))
    mask = np.clip(wave * _col(rng.uniform(1.0, 4.0, n)) * 0.5 + 0.5, 0, 1)
    return _mix(mask, *_any_colours(rng, n))


def colour_blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    background = _hsv(rng.uniform(0, 1, n), rng.uniform(0, 0.5, n), rng.uniform(0.05, 0.25, n))
    img = np.broadcast_to(background[:, :, None, None], (n, 3, SIZE, SIZE)).copy()
    for _ in range(5):
        present = _col(rng.uniform(0, 1, n) < 0.8)
        cy, cx = _col(rng.uniform(0, SIZE, n)), _col(rng.uniform(0, SIZE, n))
        sigma = _col(rng.uniform(15, 45, n))
        # A Gaussian is separable: the outer product of a row and a column profile.
        g = (np.exp(-((_Y - cy) ** 2) / (2 * sigma**2)) * present) * np.exp(-((_X - cx) ** 2) / (2 * sigma**2))
        colour = _hsv(rng.uniform(0, 1, n), rng.uniform(0.7, 1.0, n), rng.uniform(0.8, 1.0, n))
        step = np.subtract(colour[:, :, None, None], img)  # in place below: this loop is the hot spot
        step *= g[:, None]
        img += step
    return img


def polka_dots(rng: np.random.Generator, n: int) -> np.ndarray:
    spacing = _col(rng.uniform(24, 48, n))
    radius = spacing * _col(rng.uniform(0.2, 0.35, n))
    dx = np.mod(_X - _col(rng.uniform(0, 48, n)), spacing) - spacing / 2
    dy = np.mod(_Y - _col(rng.uniform(0, 48, n)), spacing) - spacing / 2
    mask = np.clip(radius - np.sqrt(dx**2 + dy**2) + 0.5, 0, 1)  # anti-aliased disc edges
    return _mix(mask, *_any_colours(rng, n))


def _shape_on_texture(rng: np.random.Generator, n: int, shape: str) -> np.ndarray:
    img = _textured_background(rng, n)
    half = _col(rng.uniform(35, 70, n))
    cy, cx = _col(rng.uniform(80, 176, n)), _col(rng.uniform(80, 176, n))
    if shape == "disc":
        mask = np.clip(half - np.sqrt((_X - cx) ** 2 + (_Y - cy) ** 2) + 0.5, 0, 1)
    else:  # a square turned by up to 30 degrees either way
        theta = np.deg2rad(rng.uniform(-30, 30, n))
        c, s = _col(np.cos(theta)), _col(np.sin(theta))
        u, v = (_X - cx) * c + (_Y - cy) * s, -(_X - cx) * s + (_Y - cy) * c
        mask = np.clip(half - np.maximum(np.abs(u), np.abs(v)) + 0.5, 0, 1)
    colour = _hsv(rng.uniform(0, 1, n), rng.uniform(0.6, 1.0, n), rng.uniform(0.7, 1.0, n))
    img += mask[:, None] * (colour[:, :, None, None] - img)
    return img


def squares_on_texture(rng: np.random.Generator, n: int) -> np.ndarray:
    return _shape_on_texture(rng, n, "square")


def discs_on_texture(rng: np.random.Generator, n: int) -> np.ndarray:
    return _shape_on_texture(rng, n, "disc")


CLASSES: dict[str, tuple[Generator, str]] = {
    "stripes_vertical_warm": (stripes_vertical_warm, "vertical red/yellow stripes"),
    "stripes_horizontal_warm": (stripes_horizontal_warm, "the same colours, horizontal (orientation only)"),
    "stripes_vertical_cool": (stripes_vertical_cool, "vertical blue/green stripes (colour only)"),
    "stripes_diagonal_cool": (stripes_diagonal_cool, "blue/green stripes at 45 degrees"),
    "checkerboard": (checkerboard, "two-colour checkerboards, random colours, slightly turned"),
    "concentric_rings": (concentric_rings, "rings around a random centre, random colours"),
    "colour_blobs": (colour_blobs, "soft coloured Gaussian blobs on a dark background"),
    "polka_dots": (polka_dots, "regular grids of dots, random colours"),
    "squares_on_texture": (squares_on_texture, "a filled square on a smooth noise texture"),
    "discs_on_texture": (discs_on_texture, "a filled disc on the same kind of texture (shape only)"),
}


def generate_class(name: str, n: int, seed: int = SEED, split: str = "train") -> np.ndarray:
    """n images of one class as uint8 (n, 256, 256, 3), the same for the same (name, n, seed, split)."""
    if name not in CLASSES:
        raise ValueError(f"unknown demo class {name!r}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    index = list(CLASSES).index(name)
    rng = np.random.default_rng([seed, index, 0 if split == "train" else 1])
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    # One noise tile per class and split; each image reads it at its own random offset.
    tile = rng.normal(0, 1, (2 * SIZE, 2 * SIZE)).astype(np.float32)
    for start in range(0, n, _CHUNK):
        k = min(_CHUNK, n - start)
        img = np.require(CLASSES[name][0](rng, k), np.float32, ["C", "W"])
        brightness = rng.uniform(0.75, 1.15, k).astype(np.float32) * 255.0
        noise_amp = rng.uniform(0.0, 0.06, k).astype(np.float32) * 255.0
        offsets = rng.integers(0, SIZE, (k, 2))
        # Per-image slices of a shared tile: cheap views, far fewer random numbers than fresh noise.
        grain = np.stack([tile[y : y + SIZE, x : x + SIZE] for y, x in offsets])
        grain *= noise_amp[:, None, None]
        grain += 0.5  # round to nearest below
        img *= brightness[:, None, None, None]
        img += grain[:, None]
        np.clip(img, 0, 255, out=img)
        np.copyto(out[start : start + k], img.transpose(0, 2, 3, 1), casting="unsafe")
    return out


# ---- the folder ---------------------------------------------------------------------------------


def demo_folder_name(train_per_class: int = TRAIN_PER_CLASS, val_per_class: int = VAL_PER_CLASS, seed: int = SEED) -> str:
    if (train_per_class, val_per_class, seed) == (TRAIN_PER_CLASS, VAL_PER_CLASS, SEED):
        return VERSION
    return f"{VERSION}-{train_per_class}x{val_per_class}-seed{seed}"


def ensure_demo_dataset(
    cache_root: Path,
    progress: ProgressFn | None = None,
    train_per_class: int = TRAIN_PER_CLASS,
    val_per_class: int = VAL_PER_CLASS,
    seed: int = SEED,
) -> Path:
    """The demo dataset folder (with train/ and val/ class folders), generated on first use.

    Non-default sizes or seeds get their own folder, so they never mix with the default dataset.
    Raises DemoError if the folder exists but is not a finished demo dataset.
    """
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError(f"need at least one image per class, got {train_per_class} train and {val_per_class} val")
    cache_root = Path(cache_root)
    name = demo_folder_name(train_per_class, val_per_class, seed)
    final = cache_root / name
    if final.exists():
        return _check_finished(final)
    cache_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(cache_root, name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".tmp", dir=cache_root))
    try:
        _write_dataset(tmp, train_per_class, val_per_class, seed, progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            # Another process finished first: use theirs.
            shutil.rmtree(tmp, ignore_errors=True)
            return _check_finished(final)
        fsync_dir(cache_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_dataset(root: Path, n_train: int, n_val: int, seed: int, progress: ProgressFn | None) -> None:
    total, done = len(CLASSES) * (n_train + n_val), 0
    for split, n in (("train", n_train), ("val", n_val)):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, image in enumerate(generate_class(name, n, seed, split)):
                buf = io.BytesIO()
                Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
                with open(folder / f"{name}_{i:04d}.jpg", "wb") as f:
                    f.write(buf.getvalue())
                    os.fsync(f.fileno())
                done += 1
            if progress is not None:
                progress(done, total)
    (root / "README.txt").write_text(_readme(n_train, n_val, seed), encoding="utf-8")
    manifest = {
        "version": VERSION,
        "seed": seed,
        "size": SIZE,
        "classes": list(CLASSES),
        "train_per_class": n_train,
        "val_per_class": n_val,
        "format": f"JPEG quality {JPEG_QUALITY}",
    }
    # Written last: a folder with a manifest is a finished one.
    with open(root / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    for d in [root / s for s in ("train", "val")] + [root]:
        fsync_dir(d)


def _readme(n_train: int, n_val: int, seed: int) -> str:
    lines = [
        "alexgui demo dataset (" + VERSION + ")",
        "",
        "Procedurally generated by alexgui (alexgui/engine/data/demo.py), seed " + str(seed) + ": not photographs.",
        f"{len(CLASSES)} classes of {SIZE}x{SIZE} RGB images, {n_train} for training and {n_val} for validation",
        "per class. Some pairs differ only in orientation, only in colour or only in shape, so a network",
        "has to learn oriented edge and colour detectors, as AlexNet's first layer does (paper Figure 3).",
        "Safe to delete: alexgui makes it again on first use.",
        "",
    ]
    lines += [f"  {name:<24} {desc}" for name, (_, desc) in CLASSES.items()]
    return "\n".join(lines) + "\n"


def _check_finished(folder: Path) -> Path:
    if not (folder / "manifest.json").is_file() or not (folder / "train").is_dir() or not (folder / "val").is_dir():
        raise DemoError(f"{folder}: not a finished demo dataset (no manifest.json); delete the folder to regenerate it")
    return folder


def _remove_stale_temporaries(cache_root: Path, name: str) -> None:
    now = time.time()
    for tmp in cache_root.glob(f".{name}-*.tmp"):
        try:
            if tmp.is_dir() and now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass  # another process removed or renamed it meanwhile

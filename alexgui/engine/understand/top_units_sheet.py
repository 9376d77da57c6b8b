"""A unit's top images as one contact sheet PNG: the patches (conv) or crops (fc) that drive it most.

Each cell is what the unit saw: for a conv unit the receptive-field patch around its maximum, cut from
the model's centre crop of the image; for an fc unit the whole centre crop. Under each, the activation
and the file's name, so a sheet can be read without the app.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.store.atomic import atomic_target
from alexgui.engine.understand.top_units import TopImage

CELL = 128
CAPTION_PX = 12
BACKGROUND = (32, 32, 36)
TEXT = (225, 225, 225)
MUTED = (160, 160, 170)


def unit_view(entry: TopImage, decode_size: int, crop: int) -> np.ndarray:
    """(h, w, 3) uint8: the patch of the model's centre crop the unit responded to (all of it for fc)."""
    u8 = load_256(entry.path, decode_size)
    top = (u8.shape[0] - crop) // 2
    left = (u8.shape[1] - crop) // 2
    view = u8[top : top + crop, left : left + crop]
    if entry.box is not None:
        x0, y0, x1, y1 = entry.box
        view = view[y0:y1, x0:x1]
    return np.ascontiguousarray(view)


def contact_sheet(entries: Sequence[TopImage], title: str, decode_size: int, crop: int, cols: int = 3) -> Image.Image:
    """The entries in a grid of `cols` columns under `title` (its lines after the first are muted); an image
    that cannot be read is a grey cell."""
    font = ImageFont.load_default(size=CAPTION_PX)
    title_font = ImageFont.load_default(size=CAPTION_PX + 3)
    pad, caption_h = 8, 2 * (CAPTION_PX + 3)
    rows = max(1, -(-len(entries) // cols))
    title_lines = title.split("\n")
    title_h = len(title_lines) * (CAPTION_PX + 6) + 2 * pad
    sheet = Image.new("RGB", (cols * (CELL + pad) + pad, title_h + rows * (CELL + caption_h + pad)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(title_lines):  # the first line in the title's font, the rest (the model) muted
        draw.text((pad, pad + i * (CAPTION_PX + 6)), fit(line, title_font if i == 0 else font, sheet.width - 2 * pad),
                  fill=TEXT if i == 0 else MUTED, font=title_font if i == 0 else font)
    for n, entry in enumerate(entries):
        row, col = divmod(n, cols)
        x, y = pad + col * (CELL + pad), title_h + row * (CELL + caption_h + pad)
        try:
            cell = Image.fromarray(unit_view(entry, decode_size, crop)).resize((CELL, CELL), Image.Resampling.LANCZOS)
            sheet.paste(cell, (x, y))
        except (ImageError, ValueError):
            draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), fill=(70, 70, 70))
        draw.text((x, y + CELL + 2), f"#{n + 1} · {entry.activation:.3g}", fill=TEXT, font=font)
        draw.text((x, y + CELL + 2 + CAPTION_PX + 2), fit(Path(entry.path).name, font, CELL), fill=MUTED, font=font)
    return sheet


def fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
    """`text` cut in the middle with "…" until it is at most `width` pixels wide in `font`."""
    if font.getlength(text) <= width:
        return text
    keep = len(text)
    while keep > 2:
        keep -= 1
        head, tail = text[: (keep + 1) // 2], text[len(text) - keep // 2 :]
        short = f"{head}…{tail}"
        if font.getlength(short) <= width:
            return short
    return "…"


def save_contact_sheet(entries: Sequence[TopImage], path: str | os.PathLike[str], title: str, decode_size: int,
                       crop: int) -> Path:
    image = contact_sheet(entries, title, decode_size, crop)
    with atomic_target(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)

"""Decoding any image file a user has into 8-bit RGB, or a short reason why it cannot be used.

Everything that reads pixels from a user's file goes through `decode_image` or `load_256`, so the
app treats every format, mode and kind of damage the same way: grayscale, CMYK, palette, alpha,
16-bit and float images become plain RGB; EXIF orientation is honoured; empty, truncated,
unidentifiable, unreadable and oversized files raise `ImageError` naming the file and the problem.
"""

from __future__ import annotations

import math
import os
import re
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from alexgui.engine.data.walk import display_path, special_file_reason
from alexgui.errors import AlexguiError

# Refuse images with more pixels than this before decoding them. Pillow's own hard limit is twice
# its warning threshold (2 * 89,478,485); we use the same number so the two refusals agree, and
# check it ourselves from the header so the message can say how big the image claims to be.
MAX_PIXELS = 178_956_970

# Transparent pixels are composited onto mid grey: it sits close to the mean of natural images, so
# after the mean image is subtracted a transparent area carries almost no signal, where white or
# black would look like a strong edge around every cut-out object.
ALPHA_BACKGROUND = (128, 128, 128)

# Pillow's open() warns (DecompressionBombWarning) about images between its two limits. Silencing
# that needs warnings.catch_warnings(), which edits process-wide state and is not thread-safe, so
# the pre-flight's threads take turns for the open() call only (reading a header is quick; the
# decoding itself runs outside the lock, in parallel).
_OPEN_LOCK = threading.Lock()


def _reset_open_lock_in_child() -> None:
    # A DataLoader worker forked while another thread held the lock would otherwise wait forever.
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_open_lock_in_child)


class ImageError(AlexguiError):
    """A file that cannot be used as an image; str() is "PATH: reason", the path printable (a name
    that is not valid UTF-8 shows its bytes as \\xNN)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(display_path(path), reason)
        self.path: str = self.path or display_path(path)

    @property
    def reason(self) -> str:
        return self.problem


def decode_image(path: str | os.PathLike[str]) -> Image.Image:
    """The image in `path` as an RGB PIL image, upright per its EXIF orientation (first frame only)."""
    return _decode(path, min_short_side=None)


def load_256(path: str | os.PathLike[str], size: int = 256) -> np.ndarray:
    """The paper's input image: short side rescaled to `size`, then the central size x size patch.

    Returns a (size, size, 3) uint8 array. Cropping and rescaling are one resampling step (the
    central square of the original is resized straight to size x size), which is the same patch as
    rescale-then-crop without rounding the intermediate size.
    """
    image = _decode(path, min_short_side=size)
    width, height = image.size
    side = min(width, height)
    left = (width - side) / 2
    top = (height - side) / 2
    box = (left, top, left + side, top + side)
    # Lanczos in Pillow widens its kernel when shrinking, so downscaling is properly antialiased.
    patch = image.resize((size, size), Image.Resampling.LANCZOS, box=box)
    return np.asarray(patch, dtype=np.uint8).copy()


def _decode(path: str | os.PathLike[str], min_short_side: int | None) -> Image.Image:
    path = Path(path)
    try:
        with open_regular(path) as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ImageError(path, "empty file")
            image = _open(path, f)
            try:
                _check_size(path, image)
                if min_short_side is not None:
                    _draft(image, min_short_side)
                try:
                    image.load()
                except Image.DecompressionBombError as e:
                    raise ImageError(path, _bomb_reason(str(e))) from None
                except MemoryError:
                    raise ImageError(path, "too large to decode (out of memory)") from None
                except Exception:  # noqa: BLE001 - Pillow's many error types become one ImageError below
                    # Pillow reports damage as OSError, SyntaxError, ValueError, EOFError, struct or
                    # zlib errors depending on the format; to the user they all mean the same thing.
                    raise ImageError(path, "truncated or corrupt image data") from None
                image = _upright(image)
                return _to_rgb(path, image)
            finally:
                image.close()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image file") from None
    except PermissionError:
        raise ImageError(path, "unreadable: permission denied") from None
    except OSError as e:
        raise ImageError(path, f"unreadable: {e.strerror or e}") from None


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open `path` for reading only if it is a regular file.

    A FIFO would block open() until some writer came (forever, and Ctrl-C cannot interrupt it), a
    device may do something on open: both are refused from a stat first. The open itself is
    non-blocking and checked again with fstat, in case the name was swapped in between.
    """
    reason = special_file_reason(os.stat(path).st_mode)
    if reason is not None:
        raise ImageError(path, reason)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        reason = special_file_reason(os.fstat(fd).st_mode)
        if reason is not None:
            raise ImageError(path, reason)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open(path: Path, f: BinaryIO) -> Image.Image:
    """Identify the format and read the header; no pixel data is decoded yet."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(f)
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (could not identify format)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(path, _bomb_reason(str(e))) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, PermissionError):
            raise
        # The format was recognised but its header is damaged.
        raise ImageError(path, "truncated or corrupt image data") from None


def _check_size(path: Path, image: Image.Image) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(path, f"invalid image size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise ImageError(path, f"decompression bomb: {width}x{height} pixels exceeds limit {MAX_PIXELS:,}")


def _bomb_reason(pillow_message: str) -> str:
    # Pillow refused before we saw the header's size; its message carries only the pixel count.
    match = re.search(r"\((\d+) pixels\)", pillow_message)
    if match:
        return f"decompression bomb: {int(match.group(1)):,} pixels exceeds limit {MAX_PIXELS:,}"
    return f"decompression bomb: more than {MAX_PIXELS:,} pixels"


def _draft(image: Image.Image, min_short_side: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the short side stays >= min_short_side.

    DCT-domain scaling is both faster and a good low-pass filter; the final resize still produces
    exactly the requested size. Formats other than JPEG (and MPO) ignore draft().
    """
    width, height = image.size
    scale = min_short_side / min(width, height)
    if scale >= 1:
        return
    image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - any damage in the EXIF block
        # A damaged EXIF block costs the orientation, not the image.
        return image.copy()


def _to_rgb(path: Path, image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_scale_to_u8(np.asarray(image)), "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise ImageError(path, f"unsupported colour mode {mode}") from None


def _scale_to_u8(values: np.ndarray) -> np.ndarray:
    """High bit depth to 8 bits by scaling the full range (65535 -> 255), never by clipping.

    16-bit data is divided by 257 (the exact map of 0..65535 onto 0..255). 32-bit integers that fit
    in 16 bits are taken as 16-bit (how 16-bit PNGs used to load); floats in [0, 1] are scaled by
    255. Anything else has no standard range and is stretched from its minimum to its maximum.
    """
    data = values.astype(np.float64)
    if not np.all(np.isfinite(data)):
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if values.dtype.kind == "f":
        if low >= 0.0 and high <= 1.0:
            scaled = data * 255.0
        else:
            scaled = _stretch(data, low, high)
    elif low >= 0 and high <= 65535:
        scaled = data / 257.0
    else:
        scaled = _stretch(data, low, high)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _stretch(data: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros_like(data)
    return (data - low) * (255.0 / (high - low))

"""Decoding every format and mode a user may have, and refusing bad files with a reason."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexgui.engine.data import imageio
from alexgui.engine.data.imageio import (
    ALPHA_BACKGROUND,
    ImageError,
    decode_image,
    load_256,
)


def _pixel(path: Path, xy: tuple[int, int] = (5, 5)) -> tuple[int, ...]:
    image = decode_image(path)
    assert image.mode == "RGB"
    return tuple(int(v) for v in np.asarray(image)[xy[1], xy[0]])


def _stored_mode(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 0) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_rgb16(path: Path, width: int, height: int, rgb: tuple[int, int, int]) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    row = b"\x00" + struct.pack(">HHH", *rgb) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(row * height))
        + _png_chunk(b"IEND", b"")
    )


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height and that has no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))


# -- formats -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "options", "tol"),
    [
        (".jpg", {"quality": 95}, 3),
        (".png", {}, 0),
        (".webp", {"lossless": True}, 0),
        (".bmp", {}, 0),
        (".tif", {}, 0),
        (".gif", {}, 0),
    ],
)
def test_every_format_decodes_to_rgb(tmp_path: Path, suffix: str, options: dict, tol: int) -> None:
    path = tmp_path / f"image{suffix}"
    Image.new("RGB", (40, 30), (200, 40, 60)).save(path, **options)
    assert _close(_pixel(path), (200, 40, 60), tol)
    assert decode_image(path).size == (40, 30)


def test_gif_uses_the_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    red, blue = Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (40, 30), (0, 0, 255))
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    assert _pixel(path) == (255, 0, 0)


def test_a_jpeg_named_png_still_decodes(tmp_path: Path) -> None:
    # The format comes from the bytes, not the name.
    path = tmp_path / "really_a_jpeg.png"
    Image.new("RGB", (40, 30), (0, 128, 255)).save(path, format="JPEG", quality=95)
    assert _close(_pixel(path), (0, 128, 255), 3)


# -- modes ---------------------------------------------------------------------------------


def test_grayscale(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.new("L", (40, 30), 77).save(path)
    assert _pixel(path) == (77, 77, 77)


def test_one_bit(tmp_path: Path) -> None:
    path = tmp_path / "bits.png"
    Image.new("1", (40, 30), 1).save(path)
    assert _pixel(path) == (255, 255, 255)


def test_cmyk_jpeg_and_tiff(tmp_path: Path) -> None:
    for name in ("cmyk.jpg", "cmyk.tif"):
        path = tmp_path / name
        Image.new("CMYK", (40, 30), (255, 0, 0, 0)).save(path)  # pure cyan
        assert _close(_pixel(path), (0, 255, 255), 3), name


def test_palette(tmp_path: Path) -> None:
    image = Image.new("P", (40, 30), 1)
    image.putpalette([0, 0, 0, 10, 220, 30] + [0] * (256 * 3 - 6))
    path = tmp_path / "palette.png"
    image.save(path)
    assert _pixel(path) == (10, 220, 30)


def test_palette_with_transparency_is_composited(tmp_path: Path) -> None:
    image = Image.new("P", (40, 30), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    image.paste(1, (20, 0, 40, 30))
    for name in ("transparent.png", "transparent.gif"):
        path = tmp_path / name
        image.save(path, transparency=0)
        assert _pixel(path, (5, 5)) == ALPHA_BACKGROUND, name
        assert _pixel(path, (30, 5)) == (0, 255, 0), name


def test_rgba_is_composited_onto_the_neutral_background(tmp_path: Path) -> None:
    image = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (10, 0, 20, 30))
    image.paste((255, 255, 255, 128), (20, 0, 30, 30))
    path = tmp_path / "rgba.png"
    image.save(path)
    assert _pixel(path, (5, 5)) == ALPHA_BACKGROUND
    assert _pixel(path, (15, 5)) == (0, 0, 255)
    half = round(128 + (255 - 128) * 128 / 255)
    assert _close(_pixel(path, (25, 5)), (half, half, half), 1)


def test_gray_with_alpha(tmp_path: Path) -> None:
    image = Image.new("LA", (40, 30), (0, 0))
    image.paste((200, 255), (20, 0, 40, 30))
    path = tmp_path / "la.png"
    image.save(path)
    assert _pixel(path, (5, 5)) == ALPHA_BACKGROUND
    assert _pixel(path, (30, 5)) == (200, 200, 200)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_gray_is_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    values = np.full((30, 40), 65535, dtype=np.uint16)
    values[:, 20:] = 257 * 100
    path = tmp_path / f"gray16{suffix}"
    Image.fromarray(values).save(path)
    assert _stored_mode(path).startswith("I;16")
    assert _pixel(path, (5, 5)) == (255, 255, 255)
    assert _pixel(path, (30, 5)) == (100, 100, 100)


def test_16_bit_big_endian_tiff(tmp_path: Path) -> None:
    values = np.full((30, 40), 257 * 50, dtype=">u2")
    image = Image.frombytes("I;16B", (40, 30), values.tobytes())
    path = tmp_path / "gray16b.tif"
    image.save(path)
    assert _stored_mode(path) == "I;16B"
    assert _pixel(path) == (50, 50, 50)


def test_32_bit_integer_tiff_in_16_bit_range(tmp_path: Path) -> None:
    path = tmp_path / "int32.tif"
    Image.fromarray(np.full((30, 40), 65535, dtype=np.int32)).save(path)
    assert _stored_mode(path) == "I"
    assert _pixel(path) == (255, 255, 255)


def test_float_tiff(tmp_path: Path) -> None:
    values = np.full((30, 40), 0.5, dtype=np.float32)
    values[:, 20:] = 1.0
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    assert _stored_mode(path) == "F"
    assert _pixel(path, (5, 5)) == (128, 128, 128)
    assert _pixel(path, (30, 5)) == (255, 255, 255)


def test_16_bit_rgb_png(tmp_path: Path) -> None:
    path = tmp_path / "rgb16.png"
    _png_rgb16(path, 40, 30, (65535, 0, 257 * 100))
    assert _pixel(path) == (255, 0, 100)


def test_exif_orientation_6_rotates_clockwise(tmp_path: Path) -> None:
    # Stored 40 wide x 30 high: left half red, right half blue. Orientation 6 means "rotate 90
    # degrees clockwise to display", so the upright image is 30 x 40 with red on top.
    image = Image.new("RGB", (40, 30), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, quality=95, exif=exif.tobytes())
    upright = decode_image(path)
    assert upright.size == (30, 40)
    assert _close(_pixel(path, (15, 5)), (255, 0, 0), 6)
    assert _close(_pixel(path, (15, 35)), (0, 0, 255), 6)
    assert load_256(path)[20, 128].argmax() == 0  # red on top after the crop too


# -- load_256 ------------------------------------------------------------------------------


def _stripes(width: int, height: int, vertical: bool) -> Image.Image:
    """Three equal stripes red, green, blue across the long side."""
    image = Image.new("RGB", (width, height), (0, 255, 0))
    if vertical:
        image.paste((255, 0, 0), (0, 0, width, height // 3))
        image.paste((0, 0, 255), (0, 2 * height // 3, width, height))
    else:
        image.paste((255, 0, 0), (0, 0, width // 3, height))
        image.paste((0, 0, 255), (2 * width // 3, 0, width, height))
    return image


@pytest.mark.parametrize(("width", "height"), [(300, 100), (100, 300)])
def test_load_256_takes_the_central_square(tmp_path: Path, width: int, height: int) -> None:
    path = tmp_path / "stripes.png"
    _stripes(width, height, vertical=height > width).save(path)
    patch = load_256(path)
    assert patch.shape == (256, 256, 3) and patch.dtype == np.uint8
    # The central square of a 3:1 image is exactly the green stripe.
    assert np.abs(patch[8:-8, 8:-8].astype(int) - (0, 255, 0)).max() <= 2


def test_load_256_upscales_small_images(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(path)
    patch = load_256(path)
    assert patch.shape == (256, 256, 3)
    assert (patch == (1, 2, 3)).all()


def test_load_256_other_sizes(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (90, 60), (9, 8, 7)).save(path)
    assert load_256(path, 64).shape == (64, 64, 3)


def test_load_256_big_jpeg_through_draft_keeps_size_and_content(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    _stripes(2400, 800, vertical=False).save(path, quality=95)
    patch = load_256(path)
    assert patch.shape == (256, 256, 3)
    assert np.abs(patch[16:-16, 16:-16].astype(int) - (0, 255, 0)).max() <= 12


def test_load_256_smooths_when_shrinking(tmp_path: Path) -> None:
    # A one-pixel checkerboard averages to mid grey when properly filtered; point sampling would
    # give pure black or white.
    board = (np.indices((512, 512)).sum(axis=0) % 2 * 255).astype(np.uint8)
    path = tmp_path / "checker.png"
    Image.fromarray(board).save(path)
    patch = load_256(path, 64).astype(int)
    assert np.abs(patch[8:-8, 8:-8] - 128).max() <= 3


# -- bad files -----------------------------------------------------------------------------


def _reason(path: Path) -> str:
    with pytest.raises(ImageError) as caught:
        load_256(path)
    assert caught.value.path == str(path)
    assert str(caught.value) == f"{path}: {caught.value.reason}"
    return caught.value.reason


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    assert _reason(path) == "empty file"


def test_text_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    assert _reason(path) == "not an image (could not identify format)"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(buffer, fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    assert _reason(path) == "truncated or corrupt image data"


def test_header_claiming_a_huge_size_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    _png_header_only(path, 100_000, 100_000)
    reason = _reason(path)
    assert reason.startswith("decompression bomb: ")
    assert "10,000,000,000 pixels" in reason and f"{imageio.MAX_PIXELS:,}" in reason


def test_size_between_pillows_warning_and_our_limit_emits_no_warning(tmp_path: Path) -> None:
    # 10000 x 10000 is above Pillow's warning threshold but below MAX_PIXELS: no warning may
    # escape (pytest turns warnings into errors) and the missing pixel data is the reason.
    assert Image.MAX_IMAGE_PIXELS is not None and 10_000**2 > Image.MAX_IMAGE_PIXELS
    path = tmp_path / "big_header.png"
    _png_header_only(path, 10_000, 10_000)
    assert _reason(path) == "truncated or corrupt image data"


def test_our_pixel_limit_names_the_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio, "MAX_PIXELS", 1000)
    path = tmp_path / "large.png"
    Image.new("RGB", (40, 30), 0).save(path)
    assert _reason(path) == "decompression bomb: 40x30 pixels exceeds limit 1,000"


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert _reason(tmp_path / "gone.jpg") == "file not found"
    assert _reason(tmp_path) == "is a folder, not an image file"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "locked.png"
    Image.new("RGB", (40, 30), 0).save(path)
    path.chmod(0)
    try:
        assert _reason(path) == "unreadable: permission denied"
    finally:
        path.chmod(0o644)


def test_permission_error_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same check where chmod cannot block reads (running as root).
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imageio, "open_regular", refuse)
    assert _reason(tmp_path / "any.png") == "unreadable: permission denied"

"""Image intake: limits, magic bytes, decoding and colour conversion."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from faceapi.adapters.images import decode_image, sniff_format
from faceapi.config import Settings
from faceapi.domain.errors import (
    ImageTooLarge,
    ImageTooManyPixels,
    InvalidImage,
    UnsupportedImageFormat,
)
from tests.conftest import encode, solid_image

SETTINGS = Settings(env="test")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but carries almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def png_bomb(side: int) -> bytes:
    """A real, valid, highly compressed PNG of side x side black pixels."""
    raw_row = b"\x00" + b"\x00" * side
    compressed = zlib.compress(raw_row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    chunks = chunk(b"IHDR", ihdr) + chunk(b"IDAT", compressed) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def test_png_and_jpeg_are_decoded_to_rgb_pixels() -> None:
    for fmt in ("PNG", "JPEG"):
        image = decode_image(solid_image(40, 30, fmt), SETTINGS)
        assert image.pixels.shape == (30, 40, 3)
        assert image.pixels.dtype == np.uint8
        assert len(image.sha256) == 64


def test_bytes_over_the_limit_are_refused_before_decoding() -> None:
    small = SETTINGS.with_overrides(max_image_bytes=2048)
    with pytest.raises(ImageTooLarge):
        decode_image(b"\xff\xd8\xff" + b"\x00" * 4096, small)


def test_empty_input_is_an_invalid_image() -> None:
    with pytest.raises(InvalidImage):
        decode_image(b"", SETTINGS)


def test_text_named_like_a_jpeg_is_an_unsupported_format() -> None:
    with pytest.raises(UnsupportedImageFormat):
        decode_image(b"hello, this is not an image at all", SETTINGS)


def test_formats_outside_the_allowlist_are_refused_and_accepted_when_configured() -> None:
    gif = solid_image(20, 20, "GIF")
    assert sniff_format(gif) == "gif"
    with pytest.raises(UnsupportedImageFormat):
        decode_image(gif, SETTINGS)
    allowed = SETTINGS.with_overrides(image_formats=("jpeg", "png", "gif", "webp", "bmp"))
    for fmt in ("GIF", "WEBP", "BMP"):
        assert decode_image(solid_image(20, 20, fmt), allowed).pixels.shape == (20, 20, 3)


def test_truncated_jpeg_is_an_invalid_image() -> None:
    rng = np.random.default_rng(3)
    data = encode(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8), "JPEG")
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) // 2], SETTINGS)


def test_corrupt_png_body_is_an_invalid_image() -> None:
    data = bytearray(solid_image(50, 50, "PNG"))
    data[40:60] = b"\x13" * 20
    with pytest.raises(InvalidImage):
        decode_image(bytes(data), SETTINGS)


def test_a_header_claiming_20000_by_20000_pixels_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooManyPixels):
        decode_image(png_header_only(20000, 20000), SETTINGS)


def test_a_png_decompression_bomb_is_refused_by_the_pixel_limit() -> None:
    bomb = png_bomb(8000)
    assert len(bomb) < 200_000  # small on the wire, 64 million pixels inside
    with pytest.raises(ImageTooManyPixels):
        decode_image(bomb, SETTINGS)


def test_grayscale_palette_alpha_and_16_bit_images_become_rgb() -> None:
    gray = np.full((10, 12), 200, dtype=np.uint8)
    cases = [
        encode(gray, "PNG"),
        _save(Image.fromarray(gray).convert("P"), "PNG"),
        _save(Image.new("RGBA", (12, 10), (10, 20, 30, 0)), "PNG"),
        _save(Image.fromarray(np.full((10, 12), 40000, dtype=np.uint16)), "PNG"),
        _save(Image.new("LA", (12, 10), (100, 255)), "PNG"),
    ]
    for data in cases:
        image = decode_image(data, SETTINGS)
        assert image.pixels.shape == (10, 12, 3)
    transparent = decode_image(cases[2], SETTINGS)
    assert transparent.pixels[0, 0].tolist() == [255, 255, 255]
    sixteen = decode_image(cases[3], SETTINGS)
    assert sixteen.pixels.max() == 255


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _save(img, "JPEG", exif=exif.tobytes())
    image = decode_image(data, SETTINGS)
    assert image.pixels.shape[:2] == (40, 20)


def test_jpeg_signature_with_a_png_body_is_not_guessed() -> None:
    data = b"\xff\xd8\xff" + solid_image(10, 10, "PNG")[3:]
    with pytest.raises(InvalidImage):
        decode_image(data, SETTINGS)


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()

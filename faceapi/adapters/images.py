"""Image intake: every image passes here before any engine work.

Order matters and is deliberate: the byte cap runs before anything is parsed, the
format is decided from magic bytes (never from a file name or a client's content
type), the pixel count and the decoded size (the decode budget) are checked from the
header before pixels are decoded, and only then is the image decoded: its first frame
only, converted to RGB a band of rows at a time so that no full-size intermediate
exists, with every decoder error turned into `invalid_image`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from faceapi.config import Settings
from faceapi.domain.errors import (
    ImageTooLarge,
    ImageTooManyPixels,
    InvalidImage,
    UnsupportedImageFormat,
)
from faceapi.domain.images import DecodedImage, decoded_bytes

_MAGIC: tuple[tuple[str, bytes, int], ...] = (
    ("jpeg", b"\xff\xd8\xff", 0),
    ("png", b"\x89PNG\r\n\x1a\n", 0),
    ("gif", b"GIF87a", 0),
    ("gif", b"GIF89a", 0),
    ("bmp", b"BM", 0),
    ("webp", b"WEBP", 8),
)

# Pillow's names for our format names: the decoder must agree with the magic bytes,
# so a PNG body behind a JPEG signature is refused rather than guessed.
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"}


def sniff_format(data: bytes) -> str | None:
    """The image format named by the leading magic bytes, or None."""
    for name, magic, offset in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            if name == "webp" and data[:4] != b"RIFF":
                continue
            return name
    return None


def decode_base64_image(name: str, encoded: str, limit: int) -> bytes:
    """The bytes of an image sent as base64 text (JSON bodies): ImageTooLarge is decided
    from the text's length before anything is decoded (4 characters carry 3 bytes).
    Raises ValueError (binascii.Error) when the text is not base64; callers word that
    in their own protocol."""
    if len(encoded) * 3 // 4 > limit + 3:
        raise ImageTooLarge(f"{name} is larger than {limit} bytes",
                            details={"field": name, "limit": limit})
    return base64.b64decode(encoded, validate=True)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, settings: Settings) -> DecodedImage:
    """Validate and decode `data` into RGB pixels with EXIF orientation applied."""
    if len(data) > settings.max_image_bytes:
        raise ImageTooLarge(
            f"image is {len(data)} bytes; the limit is {settings.max_image_bytes}",
            details={"bytes": len(data), "limit": settings.max_image_bytes})
    if not data:
        raise InvalidImage("image is empty")
    fmt = sniff_format(data)
    if fmt is None or fmt not in settings.image_formats:
        allowed = ", ".join(settings.image_formats)
        raise UnsupportedImageFormat(
            f"image format {'not recognised' if fmt is None else fmt + ' not accepted'}; "
            f"accepted: {allowed}", details={"accepted": list(settings.image_formats)})
    pixels = _decode(data, fmt, settings)
    return DecodedImage(data=data, sha256=sha256_hex(data), format=fmt, pixels=pixels)


class PillowImageDecoder:
    """The `ImageDecoder` port: `decode_image` with the limits of `settings`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def decode(self, data: bytes) -> DecodedImage:
        """Validate and decode `data` into RGB pixels with EXIF orientation applied."""
        return decode_image(data, self._settings)


# Bytes one decoded pixel takes in each Pillow mode: (channels, bytes per sample).
# "1" is unpacked to a byte per pixel; "I" and "F" hold 32-bit samples.
SAMPLE_LAYOUT: dict[str, tuple[int, int]] = {
    "1": (1, 1), "L": (1, 1), "P": (1, 1),
    "LA": (2, 1), "La": (2, 1), "PA": (2, 1),
    "RGB": (3, 1), "YCbCr": (3, 1), "LAB": (3, 1), "HSV": (3, 1),
    "RGBA": (4, 1), "RGBa": (4, 1), "RGBX": (4, 1), "CMYK": (4, 1),
    "I;16": (1, 2), "I;16B": (1, 2), "I;16L": (1, 2), "I;16N": (1, 2),
    "I": (1, 4), "F": (1, 4),
}
# A mode not in the table is costed as the widest one: 4 channels of 4 bytes.
_UNKNOWN_LAYOUT = (4, 4)
# A progressive JPEG is decoded through a buffer of every DCT coefficient in the image:
# 2 bytes per sample of each component at that component's own resolution (measured:
# +114 MB for a 6300² 4:2:0 JPEG, 1.5 samples a pixel; +228 MB at 4:4:4, 3 samples).
# Counting every component at full resolution refused ordinary 14 MP phone photos.
_JPEG_COEFFICIENT_BYTES = 2
# Pillow decodes WebP (still or animated) through libwebp's animation decoder, which
# keeps an RGBA canvas and hands Pillow a copy of the frame, before Pillow's own image:
# measured 613 MB for a 6300² RGB WebP, 15.4 bytes a pixel, 4 of them Pillow's image.
_WEBP_DECODER_BYTES = 12
# Conversions to RGB run over bands of rows this many pixels large, so the only
# full-size buffers are the decoded image and the RGB result.
_BAND_PIXELS = 1 << 20
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA", "P")


def sample_layout(mode: str) -> tuple[int, int]:
    """(channels, bytes per sample) of a decoded image in Pillow `mode`."""
    return SAMPLE_LAYOUT.get(mode, _UNKNOWN_LAYOUT)


def _jpeg_samples_per_pixel(img: Image.Image, channels: int) -> float:
    """Samples a pixel across a JPEG's components, from the frame header's sampling
    factors (Pillow's `layer`: (id, h, v, table) per component): 1.5 for 4:2:0 YCbCr,
    3 for 4:4:4. Without factors, every component counts at full resolution."""
    layer = getattr(img, "layer", None) or []
    factors = [(int(h), int(v)) for _, h, v, _ in layer if int(h) > 0 and int(v) > 0]
    if not factors:
        return float(len(layer) or channels)
    h_max = max(h for h, _ in factors)
    v_max = max(v for _, v in factors)
    return sum(h * v for h, v in factors) / (h_max * v_max)


def decode_cost(img: Image.Image) -> int:
    """Decoded size of an opened, not yet decoded image, from its header alone: every
    frame it declares counts, though only the first is ever decoded."""
    width, height = img.size
    channels, sample = sample_layout(img.mode)
    # n_frames comes from the header (PNG acTL, WebP) or a scan of the frame headers
    # (GIF) that decodes no pixels.
    frames = int(getattr(img, "n_frames", 1))
    working = 0.0
    if img.format == "JPEG" and img.info.get("progressive"):
        working = _jpeg_samples_per_pixel(img, channels) * _JPEG_COEFFICIENT_BYTES
    elif img.format == "WEBP":
        working = _WEBP_DECODER_BYTES
    return decoded_bytes(width, height, channels=channels, bytes_per_sample=sample,
                         frames=frames, decoder_bytes_per_pixel=working)


def _decode(data: bytes, fmt: str, settings: Settings) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow warns (and with filterwarnings=error, raises) on large images; our
            # own pixel cap below is the rule, so its warning is not needed.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as img:
                _check_header(img, settings)
                img.load()  # the first frame only: nothing here seeks further
                orientation = _exif_orientation(img)
                rgb = _rgb_pixels(img)
        # The decoded image is released before the oriented copy is made.
        return _oriented(rgb, orientation)
    except (ImageTooManyPixels, ImageTooLarge, InvalidImage):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooManyPixels("image exceeds the pixel limit") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            IndexError, TypeError, KeyError, MemoryError) as exc:
        # Pillow signals truncated/corrupt data through many exception types.
        raise InvalidImage(f"image could not be decoded ({type(exc).__name__})") from exc


def _check_header(img: Image.Image, settings: Settings) -> None:
    """The pixel cap and the decode budget, judged from the header before decoding."""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidImage("image has no pixels")
    max_pixels = settings.max_image_pixels
    if width * height > max_pixels:
        raise ImageTooManyPixels(
            f"image is {width}x{height} pixels; the limit is {max_pixels} pixels",
            details={"width": width, "height": height, "limit": max_pixels})
    cost = decode_cost(img)
    limit = settings.max_decoded_bytes
    if cost > limit:
        frames = int(getattr(img, "n_frames", 1))
        raise ImageTooLarge(
            f"image would take {cost} bytes decoded ({width}x{height} {img.mode}, "
            f"{frames} frame{'s' if frames != 1 else ''}); the limit is {limit} decoded bytes",
            details={"decoded_bytes": cost, "limit": limit, "width": width,
                     "height": height, "frames": frames})


def _exif_orientation(img: Image.Image) -> int:
    orientation = img.getexif().get(0x0112, 1)
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _oriented(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation (2-8) applied as ImageOps.exif_transpose does, on the RGB array:
    numpy views, then one contiguous copy."""
    views = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    view = views.get(orientation)
    return pixels if view is None else np.ascontiguousarray(view(pixels))


def _rgb_pixels(img: Image.Image) -> np.ndarray:
    """The decoded image as RGB uint8 (H, W, 3), converted band by band so that no
    full-size intermediate (RGBA copy, float array) ever exists."""
    width, height = img.size
    convert = _band_converter(img)
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, _BAND_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        out[top:bottom] = convert(img.crop((0, top, width, bottom)))
    return out


def _band_converter(img: Image.Image) -> Callable[[Image.Image], np.ndarray]:
    """Grayscale, palette, alpha and 16-bit bands to 8-bit RGB (broadcastable)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray
    if mode == "L" and "transparency" not in img.info:
        return lambda band: np.asarray(band)[..., np.newaxis]
    if mode in _SIXTEEN_BIT:
        # 16-bit data rarely uses its whole range; stretch to it so faces stay visible.
        # Integer arithmetic on one band at a time: no float copy of the image.
        top = max(int(_extrema(img)[1]), 1)
        return lambda band: _stretched(np.asarray(band), top)[..., np.newaxis]
    if mode == "F":
        lo, hi = _extrema(img)
        span = (hi - lo) or 1.0
        return lambda band: ((np.asarray(band, dtype=np.float32) - lo) / span * 255).astype(
            np.uint8)[..., np.newaxis]
    if mode in _ALPHA or "transparency" in img.info:
        return _over_white
    return lambda band: np.asarray(band.convert("RGB"))


def _extrema(img: Image.Image) -> tuple[float, float]:
    """Smallest and largest sample of a one-band image, without a copy of it."""
    lo, hi = img.getextrema()
    if isinstance(lo, tuple) or isinstance(hi, tuple):
        raise InvalidImage("image has an unexpected band layout")
    return float(lo), float(hi)


def _stretched(samples: np.ndarray, top: int) -> np.ndarray:
    """floor(samples * 255 / top) clipped to 0-255, in integers, in place on one band."""
    wide: npt.NDArray[np.integer[Any]] = samples.astype(
        np.uint32 if samples.dtype.itemsize <= 2 else np.int64)
    wide *= 255
    wide //= top
    np.clip(wide, 0, 255, out=wide)
    return wide.astype(np.uint8)


def _over_white(band: Image.Image) -> np.ndarray:
    """Transparent areas become white, like a page background, not black."""
    rgba = np.asarray(band.convert("RGBA"))
    alpha = rgba[..., 3:4].astype(np.uint16)
    rgb = rgba[..., :3].astype(np.uint16)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)

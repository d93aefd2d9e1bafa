"""Image intake: every image passes here before any engine work.

Order matters and is deliberate: the byte cap runs before anything is parsed, the
format is decided from magic bytes (never from a file name or a client's content
type), the pixel count is checked from the header before pixels are decoded, and only
then is the image decoded, fully, with every decoder error turned into `invalid_image`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceapi.config import Settings
from faceapi.domain.errors import (
    ImageTooLarge,
    ImageTooManyPixels,
    InvalidImage,
    InvalidParameter,
    UnsupportedImageFormat,
)
from faceapi.domain.images import DecodedImage
from faceapi.engines.base import FaceEngine, S3ImageReader, S3Object

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
    pixels = _decode(data, fmt, settings.max_image_pixels)
    return DecodedImage(data=data, sha256=sha256_hex(data), format=fmt, pixels=pixels)


def image_digest(source: bytes | S3Object) -> str:
    """SHA-256 of the image bytes, or of the S3 object's URI (audit events carry it)."""
    return sha256_hex(source.uri().encode() if isinstance(source, S3Object) else source)


def intake(source: bytes | S3Object, settings: Settings, engine: FaceEngine) -> DecodedImage:
    """Bytes go through `decode_image`; an S3 object is handed to an engine that reads
    S3 itself (Rekognition) and refused by any other, which has no way to fetch it."""
    if not isinstance(source, S3Object):
        return decode_image(source, settings)
    if not isinstance(engine, S3ImageReader):
        raise InvalidParameter(
            f"S3Object images need the rekognition engine; the {engine.name} engine "
            "takes image bytes", details={"accepted": ["bytes"]})
    return engine.image_from_s3(source)


def _decode(data: bytes, fmt: str, max_pixels: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow warns (and with filterwarnings=error, raises) on large images; our
            # own pixel cap below is the rule, so its warning is not needed.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as img:
                width, height = img.size
                if width <= 0 or height <= 0:
                    raise InvalidImage("image has no pixels")
                if width * height > max_pixels:
                    raise ImageTooManyPixels(
                        f"image is {width}x{height} pixels; the limit is {max_pixels} pixels",
                        details={"width": width, "height": height, "limit": max_pixels})
                img.load()
                oriented = ImageOps.exif_transpose(img)
                rgb = _to_rgb(oriented if oriented is not None else img)
                return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    except (ImageTooManyPixels, InvalidImage):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooManyPixels("image exceeds the pixel limit") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            IndexError, TypeError, KeyError, MemoryError) as exc:
        # Pillow signals truncated/corrupt data through many exception types.
        raise InvalidImage(f"image could not be decoded ({type(exc).__name__})") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, palette, alpha and 16-bit images to 8-bit RGB."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) or 1.0
        # 16-bit data rarely uses its whole range; stretch to it so faces stay visible.
        scaled = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        span = (hi - lo) or 1.0
        return Image.fromarray(((arr - lo) / span * 255).astype(np.uint8), mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA") or (mode in ("RGB", "L") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        # Transparent areas become white, like a page background, not black.
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")

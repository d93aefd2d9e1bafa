"""A decoded, validated input image: what the intake hands to an engine."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Rekognition's documented limit for an image sent as bytes: the Rekognition engine
# checks it before a call, and the emulator refuses larger images as Rekognition does.
REKOGNITION_MAX_IMAGE_BYTES = 5 * 1024 * 1024


def decoded_bytes(width: int, height: int, *, channels: int, bytes_per_sample: int,
                  frames: int = 1, decoder_bytes_per_pixel: float = 0) -> int:
    """What an image costs once decoded: pixels x channels x bytes per sample, for
    every frame it declares, plus the whole-image working memory its decoder needs per
    pixel for the one frame decoded (a progressive JPEG's coefficients, WebP's canvas).
    The intake compares this, read from the header, with `max_decoded_bytes` before
    decoding anything."""
    samples = channels * bytes_per_sample * max(1, frames)
    return math.ceil(width * height * (samples + decoder_bytes_per_pixel))


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """Pixels are RGB uint8 (H, W, 3) with EXIF orientation already applied.

    `data` keeps the original bytes for engines that want them (Rekognition), and
    `sha256` is the digest that audit events and logs may carry instead of the image.
    """

    data: bytes
    sha256: str
    format: str
    pixels: npt.NDArray[np.uint8]

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

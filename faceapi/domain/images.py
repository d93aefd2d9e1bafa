"""A decoded, validated input image: what the intake hands to an engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Rekognition's documented limit for an image sent as bytes: the Rekognition engine
# checks it before a call, and the emulator refuses larger images as Rekognition does.
REKOGNITION_MAX_IMAGE_BYTES = 5 * 1024 * 1024


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

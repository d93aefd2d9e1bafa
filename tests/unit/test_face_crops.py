"""Face crops (services/face_crops.py) on plain images: size cap, margin, orientation."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from faceapi.domain.faces import BoundingBox, OrientationCorrection
from faceapi.domain.images import DecodedImage
from faceapi.services.face_crops import MAX_SIDE, face_crop


def image(height: int, width: int) -> DecodedImage:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    return DecodedImage(data=b"", sha256="0" * 64, format="jpeg", pixels=pixels)


def size(jpeg: bytes | None) -> tuple[int, int]:
    assert jpeg is not None
    with Image.open(io.BytesIO(jpeg)) as crop:
        assert crop.format == "JPEG"
        return crop.size


def test_a_crop_is_the_box_with_a_margin_and_never_larger_than_the_cap() -> None:
    box = BoundingBox(width=0.5, height=0.5, left=0.25, top=0.25)
    assert size(face_crop(image(100, 100), box)) == (70, 70)  # 50 px box, 20% margin
    assert max(size(face_crop(image(1000, 1000), box))) == MAX_SIDE


def test_a_box_found_in_a_rotated_copy_is_cut_from_that_copy() -> None:
    # 100 high, 300 wide: a face found after a quarter turn is in a 300 x 100 frame.
    box = BoundingBox(width=1.0, height=0.2, left=0.0, top=0.4)
    upright = size(face_crop(image(100, 300), box))
    turned = size(face_crop(image(100, 300), box, OrientationCorrection.ROTATE_90))
    assert upright[0] > 5 * upright[1]  # a 300 x 28 strip of the upright image
    assert turned[0] < 2 * turned[1]  # 100 x 84 of the 300-high rotated frame
    assert max(turned) <= MAX_SIDE


def test_no_crop_for_an_image_without_pixels_or_a_box_outside_it() -> None:
    assert face_crop(image(0, 0), BoundingBox(0.5, 0.5, 0.1, 0.1)) is None
    assert face_crop(image(50, 50), BoundingBox(0.1, 0.1, 2.0, 2.0)) is None

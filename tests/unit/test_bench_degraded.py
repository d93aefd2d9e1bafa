"""bench/degraded.py's degradations: deterministic, decodable by our intake, and each
one the damage its name says (the benchmark's figures rest on that)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.degraded import KINDS, _rng, degrade
from bench.verify import threshold_for_fmr
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, Settings

SETTINGS = Settings(env="test", image_formats=KNOWN_FORMATS)
BOX = (60.0, 40.0, 140.0, 120.0)  # a "face" of 80 px


def picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.linspace(30, 220, 240 * 200).reshape(240, 200)
    noisy = base[..., None] + rng.normal(0, 10, (240, 200, 3))
    return np.ascontiguousarray(np.clip(noisy, 0, 255).astype(np.uint8))


def points() -> np.ndarray:
    # 68 points spread over the box, enough for the mask polygon.
    xs = np.linspace(BOX[0], BOX[2], 68)
    ys = np.linspace(BOX[1], BOX[3], 68)
    return np.stack([xs, ys], axis=1)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_deterministic_and_decodes_through_our_intake(kind: str) -> None:
    first = degrade(kind, picture(), BOX, points(), _rng(15, kind, "a.jpg"))
    again = degrade(kind, picture(), BOX, points(), _rng(15, kind, "a.jpg"))
    assert first == again
    decoded = decode_image(first, SETTINGS)
    assert decoded.pixels.ndim == 3


def test_other_seeds_or_files_give_other_copies() -> None:
    a = degrade("jpeg", picture(), BOX, points(), _rng(15, "jpeg", "a.jpg"))
    b = degrade("jpeg", picture(), BOX, points(), _rng(15, "jpeg", "b.jpg"))
    c = degrade("dark", picture(), BOX, points(), _rng(16, "dark", "a.jpg"))
    d = degrade("dark", picture(), BOX, points(), _rng(15, "dark", "a.jpg"))
    assert a != b or c != d


def test_exif_copies_are_stored_turned_and_come_out_upright() -> None:
    data = degrade("exif", picture(), BOX, points(), _rng(15, "exif", "a.jpg"))
    stored = Image.open(io.BytesIO(data))
    assert stored.getexif().get(0x0112) in (3, 6, 8)
    assert decode_image(data, SETTINGS).pixels.shape == picture().shape


def test_small_puts_a_30px_face_in_a_640x480_frame() -> None:
    data = degrade("small", picture(), BOX, points(), _rng(15, "small", "a.jpg"))
    assert decode_image(data, SETTINGS).pixels.shape == (480, 640, 3)


def test_dark_and_lowcontrast_squeeze_the_range() -> None:
    source = picture().astype(np.float64)
    dark = decode_image(degrade("dark", picture(), BOX, points(), _rng(15, "dark", "a")),
                        SETTINGS).pixels.astype(np.float64)
    low = decode_image(degrade("lowcontrast", picture(), BOX, points(),
                               _rng(15, "lowcontrast", "a")), SETTINGS).pixels
    assert dark.mean() < 0.3 * source.mean()
    assert float(low.std()) < 0.3 * float(source.std())


def test_the_threshold_for_a_target_fmr_lets_through_at_most_that_share() -> None:
    impostor = [float(i) for i in range(1000)]
    threshold = threshold_for_fmr(impostor, 1e-2)
    assert sum(s >= threshold for s in impostor) <= 10
    assert sum(s >= threshold - 1.0 for s in impostor) > 10

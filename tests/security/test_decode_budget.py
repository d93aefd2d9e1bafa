"""Issue 12, finding 7: decoding costs were unbounded under the pixel cap (a 154 KB
RGBA PNG of 6300² took a worker to 1.2 GB and 16 s; 16-bit PNGs, lossless WebP and
many-frame GIFs likewise).

Now the decoded size (pixels x channels x bytes per sample, every frame) is judged from
the header against FACEAPI_MAX_DECODED_BYTES before anything is decoded, animated
images give their first frame only, and conversions to RGB run band by band without
full-size float or RGBA copies. The crafted inputs are built in code by
bench/decode_budget.py, which measures a real worker's peak memory on the same inputs.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps, WebPImagePlugin

from bench import decode_budget as crafted
from faceapi.adapters.images import SAMPLE_LAYOUT, decode_cost, decode_image, sample_layout
from faceapi.config import KNOWN_FORMATS, Settings
from faceapi.domain.errors import ImageTooLarge
from faceapi.domain.images import decoded_bytes
from tests.security.conftest import Http

DEFAULTS = Settings(env="test", image_formats=KNOWN_FORMATS)
LIMIT = DEFAULTS.max_decoded_bytes

# Each crafted input with what the intake must answer at the default limits.
EXPECTED: dict[str, tuple[int, str]] = {
    "png_rgba_6300": (413, "image_too_large"),  # 4 bytes x 39.7 M pixels
    "png_gray16_6300": (200, ""),  # 2 bytes x 39.7 M pixels
    "png_rgba16_6300": (413, "image_too_large"),
    "png_palette_trns_6300": (200, ""),  # 1 byte x 39.7 M pixels
    "apng_400_frames_2000": (413, "image_too_large"),  # 400 frames of 16 MB
    "gif_1000_frames_6000": (413, "image_too_large"),  # 1000 frames of 36 MB
    "gif_3_frames_3000": (200, ""),
    "webp_lossless_rgba_6300": (413, "image_too_large"),
    "webp_lossless_rgb_6300": (413, "image_too_large"),  # + libwebp's canvas and copy
    "webp_lossless_rgb_2800": (200, ""),  # 15 bytes x 7.8 M pixels: just under
    "webp_animated_20_2000": (413, "image_too_large"),  # 20 frames of 12 MB
    "jpeg_rgb_6300": (200, ""),
    "jpeg_progressive_6300": (413, "image_too_large"),  # + every DCT coefficient
    "jpeg_cmyk_6300": (413, "image_too_large"),
    "jpeg_cmyk_5000": (200, ""),
    "jpeg_header_only_6300": (200, ""),  # libjpeg pads the missing data, as before
    "tiff_2000": (415, "unsupported_image_format"),  # not on the magic-byte allowlist
}


@cache
def build(name: str) -> bytes:
    return crafted.CRAFTED[name][0]()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Every known format accepted, so each crafted input reaches the decoder."""
    return Settings(env="test", data_dir=tmp_path / "data", log_format="json",
                    image_formats=KNOWN_FORMATS)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every pixel decoder Pillow creates (Image._getdecoder, which every
    ImageFile.load goes through: "jpeg", "zip", "gif", "raw"...) and every WebP frame
    libwebp decodes ("webp_frame"), in this process, which is where the live server
    runs."""
    calls: list[str] = []
    getdecoder = Image._getdecoder
    get_next = WebPImagePlugin.WebPImageFile._get_next

    def spy_decoder(mode: str, name: str, *args: object, **kw: object) -> object:
        calls.append(name)
        return getdecoder(mode, name, *args, **kw)  # type: ignore[arg-type]

    def spy_frame(self: WebPImagePlugin.WebPImageFile) -> tuple[bytes, int, int]:
        calls.append("webp_frame")
        return get_next(self)

    monkeypatch.setattr(Image, "_getdecoder", spy_decoder)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "_get_next", spy_frame)
    return calls


def detect(http: Http, key: str, data: bytes) -> tuple[int, str, dict[str, object]]:
    reply = http.post("/v1/faces/detect", key=key,
                      fields={"image": ("crafted", data, "application/octet-stream")})
    if reply.status == 200:
        return 200, "", {}
    error = reply.json()["error"]
    return reply.status, error["code"], error


# Through the real HTTP server ---------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_crafted_input_gets_its_stable_4xx_or_a_200_never_a_500(
        http: Http, make_key: Callable[..., str], name: str) -> None:
    status, code, _ = detect(http, make_key("operator"), build(name))
    assert (status, code) == EXPECTED[name]


@pytest.mark.parametrize("name", [n for n, (s, c) in EXPECTED.items() if c == "image_too_large"])
def test_the_budget_refusal_comes_from_the_header_before_any_pixel_is_decoded(
        http: Http, make_key: Callable[..., str], decodes: list[str], name: str) -> None:
    status, code, error = detect(http, make_key("operator"), build(name))
    assert (status, code) == (413, "image_too_large")
    assert decodes == []  # Pillow's decoder was never entered
    details = error["details"]
    assert isinstance(details, dict)
    assert details["limit"] == LIMIT
    assert details["decoded_bytes"] > LIMIT
    assert f"the limit is {LIMIT} decoded bytes" in str(error["message"])


def test_an_accepted_image_is_decoded_once_so_the_decode_spy_can_see_a_decode(
        http: Http, make_key: Callable[..., str], decodes: list[str]) -> None:
    """The control for the test above: the spy does see decoding when it happens."""
    status, _, _ = detect(http, make_key("operator"), crafted.jpeg_flat(300))
    assert status == 200
    assert decodes == ["jpeg"]


# Budget arithmetic ------------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(m for m in SAMPLE_LAYOUT if m != "1"))
def test_channels_times_bytes_per_sample_is_pillows_raw_size_for_each_mode(mode: str) -> None:
    channels, sample = sample_layout(mode)
    raw = Image.new(mode, (7, 5)).tobytes()
    assert len(raw) == 7 * 5 * channels * sample


def test_decoded_bytes_multiply_pixels_layout_and_frames() -> None:
    assert decoded_bytes(6300, 6300, channels=4, bytes_per_sample=1) == 158_760_000
    assert decoded_bytes(6300, 6300, channels=1, bytes_per_sample=2) == 79_380_000
    assert decoded_bytes(6000, 6000, channels=1, bytes_per_sample=1, frames=1000) == 36 * 10**9
    assert decoded_bytes(10, 10, channels=3, bytes_per_sample=1, frames=0) == 300
    assert decoded_bytes(10, 10, channels=3, bytes_per_sample=1,
                         decoder_bytes_per_pixel=6) == 900
    # The decoder's working memory is for the one frame decoded, not for every frame.
    assert decoded_bytes(10, 10, channels=3, bytes_per_sample=1, frames=2,
                         decoder_bytes_per_pixel=6) == 1200
    assert sample_layout("no such mode") == (4, 4)  # unknown: costed as the widest


def _opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_the_cost_is_read_from_the_header_of_each_format() -> None:
    assert decode_cost(_opened(crafted.png_gray16(100))) == 100 * 100 * 2
    assert decode_cost(_opened(crafted.png_rgba(100))) == 100 * 100 * 4
    assert decode_cost(_opened(crafted.gif_many_frames(100, 7))) == 100 * 100 * 7
    assert decode_cost(_opened(crafted.apng_many_frames(100, 5))) == 100 * 100 * 4 * 5
    assert decode_cost(_opened(crafted.jpeg_flat(100))) == 100 * 100 * 3
    # WebP: libwebp's RGBA canvas and the frame copy Pillow receives, 12 bytes a pixel.
    assert decode_cost(_opened(crafted.webp_lossless_flat(100, "RGB"))) == 100 * 100 * 15
    assert decode_cost(_opened(crafted.webp_animated(100, 3))) == 100 * 100 * (3 * 3 + 12)
    # A progressive JPEG also pays 2 bytes per coefficient for its coefficient buffer,
    # each component at its own resolution: 1.5 samples a pixel at 4:2:0 (Pillow's
    # default), 3 at 4:4:4.
    assert decode_cost(_opened(crafted.jpeg_flat(100, progressive=True))) == 100 * 100 * 6
    progressive_444 = _pillow_jpeg(100, progressive=True, subsampling=0)
    assert decode_cost(_opened(progressive_444)) == 100 * 100 * 9


def _pillow_jpeg(side: int, **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 150)).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def test_an_ordinary_14_megapixel_progressive_phone_photo_is_within_the_budget() -> None:
    # The shared set's img40.jpg (3061x4600, progressive 4:2:0) was refused when every
    # component was costed at full resolution (126.7 MB against the 120 MB default).
    buffer = io.BytesIO()
    Image.new("RGB", (3061, 4600), (90, 120, 150)).save(buffer, "JPEG", quality=30,
                                                        progressive=True)
    assert decode_cost(_opened(buffer.getvalue())) == 3061 * 4600 * 6
    assert Settings().max_decoded_bytes >= 3061 * 4600 * 6


def test_the_limit_is_a_setting_and_the_message_says_it() -> None:
    data = crafted.png_rgba(100)  # 40 000 decoded bytes
    decode_image(data, DEFAULTS.with_overrides(max_decoded_bytes=40_000))
    with pytest.raises(ImageTooLarge, match="the limit is 39999 decoded bytes"):
        decode_image(data, DEFAULTS.with_overrides(max_decoded_bytes=39_999))
    assert Settings.from_env({"FACEAPI_MAX_DECODED_BYTES": "5000"}).max_decoded_bytes == 5000


# Decoding: first frame only, no full-size float copy, the same pixels as before -------


def test_animated_images_give_their_first_frame_and_decode_no_other(
        decodes: list[str]) -> None:
    gif = crafted.gif_animated(64, 3)
    webp = crafted.webp_animated(64, 3)
    apng = crafted.apng_many_frames(64, 50)
    cases = ((gif, _first_frame(gif), ["gif"]),
             (webp, _first_frame(webp), ["webp_frame", "raw"]),
             (apng, (10, 20, 30), ["zip"]))
    for data, first, decoders in cases:
        decodes.clear()
        pixels = decode_image(data, DEFAULTS).pixels
        assert pixels.shape == (64, 64, 3)
        assert {tuple(p) for p in pixels.reshape(-1, 3).tolist()} == {first}
        assert decodes == decoders  # frame 0, once


def _first_frame(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as img:
        r, g, b = img.convert("RGB").getpixel((0, 0))  # type: ignore[misc]
        return int(r), int(g), int(b)


def test_a_16_bit_image_is_stretched_without_a_float_copy_of_the_image() -> None:
    side = 3000
    data = crafted.png_gray16(side)
    tracemalloc.start()
    try:
        pixels = decode_image(data, DEFAULTS).pixels
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rgb_size = side * side * 3
    # The result plus one band's working arrays; a float64 copy alone is 72 MB.
    assert peak < rgb_size + 16_000_000
    assert int(pixels.max()) == 255  # the only value, 30000, is the top of the range


def test_16_bit_values_stretch_as_floor_of_value_times_255_over_the_maximum() -> None:
    values = np.array([[0, 1000, 30000, 60000]], dtype=np.uint16)
    pixels = decode_image(_png(Image.fromarray(values)), DEFAULTS).pixels
    assert pixels[0, :, 0].tolist() == [0, 4, 127, 255]


def test_transparency_is_composited_onto_white_for_alpha_and_palette_images() -> None:
    rgba = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 255))
    rgba.putpixel((2, 0), (0, 100, 200, 128))
    pixels = decode_image(_png(rgba), DEFAULTS).pixels
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[0, 1].tolist() == [0, 0, 0]
    expected = Image.alpha_composite(
        Image.new("RGBA", (4, 2), (255, 255, 255, 255)), rgba).convert("RGB")
    assert np.abs(pixels.astype(int) - np.asarray(expected).astype(int)).max() <= 1
    palette = decode_image(crafted.png_palette_transparent(20), DEFAULTS).pixels
    assert {tuple(p) for p in palette.reshape(-1, 3).tolist()} == {(255, 255, 255)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_same_pixels_as_pillows_exif_transpose(
        orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    img = Image.fromarray(rng.integers(0, 255, (6, 9, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _png(img, exif=exif.tobytes())
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    pixels = decode_image(data, DEFAULTS).pixels
    assert pixels.flags["C_CONTIGUOUS"]
    assert np.array_equal(pixels, np.asarray(expected))


def test_cmyk_and_palette_bands_match_pillows_whole_image_conversion() -> None:
    cmyk = crafted.jpeg_flat(1100, mode="CMYK")  # > 1 band of rows
    with Image.open(io.BytesIO(cmyk)) as img:
        expected = np.asarray(img.convert("RGB"))
    assert np.array_equal(decode_image(cmyk, DEFAULTS).pixels, expected)


def _png(img: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", **options)
    return buffer.getvalue()


# The local engine on the accepted worst cases --------------------------------------


def test_the_local_engine_takes_the_accepted_worst_cases_without_copies_of_them() -> None:
    """Detection on the largest images the budget accepts (orientation search off and
    no upsampling, to keep the test to seconds): no face, no error, and the engine keeps
    working on the intake's array rather than a copy of it."""
    from faceapi.adapters.engines.local import LocalEngine
    from faceapi.adapters.engines.local.detection import find_faces
    from faceapi.domain.faces import Attributes

    engine = LocalEngine(DEFAULTS.with_overrides(orientation_search=False, upsample=0))
    for name in ("jpeg_rgb_6300", "png_gray16_6300"):
        image = decode_image(build(name), DEFAULTS)
        assert engine.detect_faces(image, Attributes.ALL).faces == ()
    # The orientation search turns the downscaled copy, not the full-size image.
    found = find_faces(image.pixels, engine._models, upsample=0, max_side=400,
                       orientation_search=True)
    assert found.faces == ()
    assert np.shares_memory(found.pixels, image.pixels)


def test_png_header_width_is_what_the_budget_reads() -> None:
    """A header claiming a size the data does not hold is costed by the header."""
    ihdr = struct.pack(">IIBBBBB", 6300, 6300, 8, 6, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + crafted._chunk(b"IHDR", ihdr)
            + crafted._chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + crafted._chunk(b"IEND", b""))
    with pytest.raises(ImageTooLarge):
        decode_image(data, DEFAULTS)

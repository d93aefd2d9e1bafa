"""Decoding under a budget: peak worker memory and time for crafted images (issue 12,
finding 7).

Run:  .venv/bin/python -m bench.decode_budget          (about a minute on 2 CPUs)

Every input is built here, in code (nothing large is committed): small on the wire,
large once decoded. The bench starts gunicorn as bench/latency.py does (one sync worker,
the local engine, every known image format accepted), sends each input to
POST /v1/faces/detect as a multipart upload, and reads the worker's peak resident set
(VmHWM in /proc/<pid>/status, reset before each request by writing 5 to
/proc/<pid>/clear_refs) and the request's wall time. Prints a table; writes
bench/results/decode_budget.json (or --output).

The target (issue 12): every request under 5 s, the worker's peak under 600 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import environment, table, write_json
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, Settings
from faceapi.domain.errors import FaceApiError

SIDE = 6300  # 39.7 million pixels: just under the default 40 million pixel cap
PEAK_LIMIT_MB = 600.0
SECONDS_LIMIT = 5.0


# PNG -----------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _idat_rows(row: bytes, height: int) -> bytes:
    """zlib stream of `height` identical filter-0 rows, compressed row by row so the
    raw image never exists in memory."""
    packer = zlib.compressobj(9)
    parts = [packer.compress(b"\x00" + row) for _ in range(height)]
    parts.append(packer.flush())
    return b"".join(parts)


def png(width: int, height: int, color_type: int, bit_depth: int, pixel: bytes, *,
        before_idat: bytes = b"") -> bytes:
    """A valid PNG whose every pixel is `pixel` (already in the file's sample layout)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + before_idat
            + _chunk(b"IDAT", _idat_rows(pixel * width, height)) + _chunk(b"IEND", b""))


def png_rgba(side: int = SIDE) -> bytes:
    """8-bit RGBA, half transparent: decoding needs alpha compositing."""
    return png(side, side, 6, 8, bytes((90, 120, 150, 128)))


def png_gray16(side: int = SIDE) -> bytes:
    """16-bit greyscale: once converted through a float64 copy of the whole image."""
    return png(side, side, 0, 16, struct.pack(">H", 30000))


def png_rgba16(side: int = SIDE) -> bytes:
    """16-bit RGBA: 8 bytes per pixel as declared."""
    return png(side, side, 6, 16, struct.pack(">HHHH", 20000, 30000, 40000, 32768))


def png_palette_transparent(side: int = SIDE) -> bytes:
    """Palette PNG with a tRNS chunk: index 0 transparent, index 1 opaque."""
    plte = _chunk(b"PLTE", bytes((0, 0, 0, 200, 100, 50)))
    trns = _chunk(b"tRNS", bytes((0, 255)))
    row_pixel = b"\x00"  # 8-bit indices, all transparent
    return png(side, side, 3, 8, row_pixel, before_idat=plte + trns)


def apng_many_frames(side: int = 2000, frames: int = 400) -> bytes:
    """APNG: a full first frame, then `frames - 1` frames of one pixel each. Every
    frame after the first is composed onto the whole canvas when a decoder seeks to it."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", ihdr),
           _chunk(b"acTL", struct.pack(">II", frames, 0))]
    seq = 0

    def fctl(width: int, height: int) -> bytes:
        nonlocal seq
        data = struct.pack(">IIIIIHHBB", seq, width, height, 0, 0, 1, 100, 0, 0)
        seq += 1
        return _chunk(b"fcTL", data)

    out.append(fctl(side, side))
    out.append(_chunk(b"IDAT", _idat_rows(bytes((10, 20, 30, 255)) * side, side)))
    one_pixel = zlib.compress(b"\x00" + bytes((200, 100, 50, 255)))
    for _ in range(frames - 1):
        out.append(fctl(1, 1))
        out.append(_chunk(b"fdAT", struct.pack(">I", seq) + one_pixel))
        seq += 1
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


# GIF -----------------------------------------------------------------------------


def gif_many_frames(side: int = 6000, frames: int = 1000) -> bytes:
    """A `side` x `side` canvas and `frames` frames of one pixel each (23 bytes a frame):
    a decoder that composes every frame onto the canvas decodes side² x frames pixels."""
    head = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0)  # 2-colour table
    palette = bytes((0, 0, 0, 255, 255, 255))
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    # Graphic control (delay 1/100 s), descriptor for 1x1 at (0, 0), LZW for one pixel.
    frame = (b"\x21\xf9\x04\x00\x01\x00\x00\x00" + b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1)
             + b"\x00" + b"\x02\x02\x44\x01\x00")
    return head + palette + loop + frame * frames + b"\x3b"


def gif_animated(side: int = 3000, frames: int = 3) -> bytes:
    """An ordinary small animation: full-canvas frames of different flat colours."""
    images = [Image.new("P", (side, side), i) for i in range(frames)]
    for img in images:
        img.putpalette([v for i in range(256) for v in (i, 255 - i, (i * 7) % 256)])
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=100, loop=0)
    return buffer.getvalue()


# WebP, JPEG, TIFF ----------------------------------------------------------------


def _pillow(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def webp_lossless_flat(side: int = SIDE, mode: str = "RGBA") -> bytes:
    """A flat lossless WebP: a few kilobytes for the whole canvas."""
    color = (90, 120, 150, 128) if mode == "RGBA" else (90, 120, 150)
    return _pillow(Image.new(mode, (side, side), color), "WEBP", lossless=True, quality=0)


def webp_animated(side: int = 2000, frames: int = 20) -> bytes:
    images = [Image.new("RGB", (side, side), (i * 5 % 256, 100, 150)) for i in range(frames)]
    return _pillow(images[0], "WEBP", save_all=True, append_images=images[1:], lossless=True,
                   quality=0, duration=50)


def jpeg_flat(side: int = SIDE, *, progressive: bool = False, mode: str = "RGB") -> bytes:
    color: tuple[int, ...] = (90, 120, 150) if mode == "RGB" else (40, 30, 20, 10)
    return _pillow(Image.new(mode, (side, side), color), "JPEG", quality=50,
                   progressive=progressive, optimize=progressive)


def jpeg_header_only(side: int = SIDE) -> bytes:
    """A JPEG whose header claims side x side and whose data stops after a few hundred
    bytes: a decoder that allocates before reading the data pays for all of it."""
    small = jpeg_flat(16)
    sof = small.index(b"\xff\xc0")
    # SOF0: marker(2) length(2) precision(1) height(2) width(2) ...
    patched = small[:sof + 5] + struct.pack(">HH", side, side) + small[sof + 9:]
    return patched[:patched.index(b"\xff\xda") + 40]


def tiff_flat(side: int = 2000) -> bytes:
    return _pillow(Image.new("RGB", (side, side), (90, 120, 150)), "TIFF", compression="tiff_lzw")


# The crafted set: name -> (builder, what it stresses).
CRAFTED: dict[str, tuple[Callable[[], bytes], str]] = {
    "png_rgba_6300": (png_rgba, "RGBA 6300², alpha compositing"),
    "png_gray16_6300": (png_gray16, "16-bit grey 6300², 16-bit conversion"),
    "png_rgba16_6300": (png_rgba16, "16-bit RGBA 6300²"),
    "png_palette_trns_6300": (png_palette_transparent, "palette + tRNS 6300²"),
    "apng_400_frames_2000": (apng_many_frames, "APNG, 400 frames on a 2000² canvas"),
    "gif_1000_frames_6000": (gif_many_frames, "GIF, 1000 one-pixel frames on a 6000² canvas"),
    "gif_3_frames_3000": (gif_animated, "GIF, 3 full frames of 3000²"),
    "webp_lossless_rgba_6300": (webp_lossless_flat, "lossless WebP RGBA, flat 6300²"),
    "webp_lossless_rgb_6300": (lambda: webp_lossless_flat(mode="RGB"),
                               "lossless WebP RGB, flat 6300²"),
    "webp_lossless_rgb_2800": (lambda: webp_lossless_flat(2800, "RGB"),
                               "lossless WebP RGB, flat 2800²"),
    "webp_animated_20_2000": (webp_animated, "animated WebP, 20 frames of 2000²"),
    "jpeg_rgb_6300": (jpeg_flat, "baseline JPEG RGB 6300²"),
    "jpeg_progressive_6300": (lambda: jpeg_flat(progressive=True), "progressive JPEG 6300²"),
    "jpeg_cmyk_6300": (lambda: jpeg_flat(mode="CMYK"), "CMYK JPEG 6300²"),
    "jpeg_cmyk_5000": (lambda: jpeg_flat(5000, mode="CMYK"), "CMYK JPEG 5000²"),
    "jpeg_header_only_6300": (jpeg_header_only, "JPEG header 6300², data cut short"),
    "tiff_2000": (tiff_flat, "TIFF (not on the magic-byte allowlist)"),
}


# Measuring -----------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def worker_pid(master: int) -> int:
    """The gunicorn worker: the master's only child."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.2)
    raise RuntimeError("no gunicorn worker appeared")


def reset_peak(pid: int) -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def main() -> None:
    from bench.latency import Server, multipart, post

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated input names")
    parser.add_argument("--output", default="decode_budget.json",
                        help="file name under bench/results")
    parser.add_argument("--set", action="append", default=[], metavar="FACEAPI_X=V",
                        help="a setting for the server (repeatable)")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    names = [n for n in CRAFTED if not args.only or n in args.only.split(",")]
    inputs = {}
    intake_seconds = {}
    settings = Settings.from_env({"FACEAPI_IMAGE_FORMATS": ",".join(KNOWN_FORMATS),
                                  **overrides})
    for name in names:
        data = CRAFTED[name][0]()
        inputs[name] = data
        # The intake alone, in this process: what decoding (or refusing) costs, apart
        # from the engine's detection.
        start = time.perf_counter()
        with contextlib.suppress(FaceApiError):
            decode_image(data, settings)
        intake_seconds[name] = time.perf_counter() - start
        print(f"built {name}: {len(data)} bytes, intake {intake_seconds[name]:.2f}s", flush=True)

    rows = []
    results = []
    with tempfile.TemporaryDirectory(prefix="faceapi-decode-budget-") as tmp:
        server = Server(Path(tmp))
        server.env["FACEAPI_TIMEOUT"] = "120"  # let the "before" figures finish
        server.env.update(overrides)
        server.start()
        assert server.process is not None
        try:
            # Warm-up: the worker's first request pays one-off costs (imports, dlib).
            warm = jpeg_flat(200)
            post(server.port, "/v1/faces/detect", *multipart("image", "warm", warm), server.key)
            for name in names:
                pid = worker_pid(server.process.pid)
                before_kb = _status_kb(pid, "VmRSS")
                reset_peak(pid)
                body, ctype = multipart("image", name, inputs[name])
                try:
                    status, seconds, code = _post_coded(server.port, body, ctype, server.key)
                except OSError as exc:  # the worker was killed (timeout, memory)
                    status, seconds, code = 0, float("nan"), type(exc).__name__
                try:
                    peak_kb = _status_kb(pid, "VmHWM")
                except (OSError, RuntimeError):
                    peak_kb = 0  # worker gone
                entry = {
                    "input": name, "what": CRAFTED[name][1], "bytes": len(inputs[name]),
                    "status": status, "code": code, "seconds": round(seconds, 3),
                    "intake_seconds": round(intake_seconds[name], 3),
                    "rss_before_mb": round(before_kb / 1024, 1),
                    "peak_rss_mb": round(peak_kb / 1024, 1),
                    "within_limits": (peak_kb / 1024 < PEAK_LIMIT_MB and status != 0
                                      and seconds < SECONDS_LIMIT and status != 500),
                }
                results.append(entry)
                rows.append([name, entry["bytes"], status, code, entry["seconds"],
                             entry["intake_seconds"],
                             entry["rss_before_mb"], entry["peak_rss_mb"],
                             "yes" if entry["within_limits"] else "NO"])
                print(f"{name}: {status} {code} {seconds:.2f}s peak {peak_kb / 1024:.0f} MB",
                      flush=True)
        finally:
            server.stop()
    print(table(["input", "bytes", "status", "code", "seconds", "intake s", "rss before MB",
                 "peak rss MB", "within limits"], rows))
    payload = {
        "environment": environment(),
        "limits": {"peak_rss_mb": PEAK_LIMIT_MB, "seconds": SECONDS_LIMIT},
        "endpoint": "POST /v1/faces/detect (multipart), local engine, 1 sync worker",
        "settings": {"max_decoded_bytes": settings.max_decoded_bytes,
                     "max_image_pixels": settings.max_image_pixels,
                     "detect_max_side": settings.detect_max_side,
                     "upsample": settings.upsample,
                     "orientation_search": settings.orientation_search},
        "load_average": os.getloadavg(),
        "results": results,
        "all_within_limits": all(r["within_limits"] for r in results),
    }
    print(f"wrote {write_json(args.output, payload)}")


def _post_coded(port: int, body: bytes, ctype: str, key: str) -> tuple[int, float, str]:
    import http.client

    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=180)
    try:
        conn.request("POST", "/v1/faces/detect", body=body, headers={
            "Content-Type": ctype, "Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        raw = response.read()
        status = response.status
    finally:
        conn.close()
    seconds = time.perf_counter() - start
    code = ""
    if status != 200:
        try:
            code = str(json.loads(raw)["error"]["code"])
        except (ValueError, KeyError, TypeError):
            code = "?"
    return status, seconds, code


if __name__ == "__main__":
    main()

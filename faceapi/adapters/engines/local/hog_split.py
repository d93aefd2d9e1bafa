"""One HOG detection on two cores, with dlib's answers.

dlib's HOG detector (`object_detector<scan_fhog_pyramid<pyramid_down<6>>>`, dlib 20.0
dlib/image_processing/object_detector.h and scan_fhog_pyramid.h) upsamples the image
(`pyramid_up`), builds an image pyramid in which level i+1 is `pyramid_down<6>` of level
i, scores every window of every level with 5 filters, maps each hit above the threshold
to level-0 pixels (`rect_up(rect, level)`, rounded once), sorts all hits by score and
keeps each one that overlaps no kept box (`test_box_overlap` with the detector's own two
thresholds), then maps the kept boxes back down through the upsampling.

The levels are independent of each other once their images exist, so the scan is split
in two: the calling thread scans levels 0..SPLIT_LEVEL-1 of the upsampled image, the
helper thread makes level SPLIT_LEVEL itself (the same `pyramid_down<6>` calls) and scans
it and every level below. Two copies of the detector read from its own serialisation
make that possible: one stops after SPLIT_LEVEL levels (`max_pyramid_levels`), and both
keep every hit (overlap thresholds of 1: no two boxes overlap). The non-max suppression
runs here on the union, as dlib runs it. The helper's hits come back in level-SPLIT_LEVEL
pixels, rounded once there; each is mapped back to the integer window it was at its own
level (unique: the map enlarges by 1.2 per level, and a window's corners lie on the
8-pixel lattice of `fhog_to_image`) and then to level 0 by dlib's own `rect_up`, rounded
once, as the full scan rounds it. Whenever something does not fit (a window with no
single level, a level count that differs, two windows with the very same score, which
dlib orders with an unstable sort) the full scan runs instead, so the answer is always
dlib's: `tests/integration/test_hog_split.py` checks boxes, scores and filter
indices for equality on the fixtures, and `bench/parity.py --hog-split` on the shared
set (bench/results/parity_hog_split.md).
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import dlib
import numpy as np
import numpy.typing as npt

from faceapi.adapters.engines.local.dlib_format import Reader

Pixels = npt.NDArray[np.uint8]
Hit = tuple[tuple[int, int, int, int], float, int]  # (left, top, right, bottom), score, filter
# Runs a function on the helper thread; the context gives None when the helper is busy.
Submit = Callable[[Callable[[], Any]], Future[Any]]
Helper = Callable[[], AbstractContextManager[Submit | None]]

# Level areas shrink by (5/6)**2 = 0.69 a level: levels 0-1 hold 52% of the pixels and
# the rest 48%, the most even split (measured: 0.68-0.72 of one thread's time with 2
# against 0.80-0.86 with 1 and 0.73-0.77 with 3; docs/engines.md).
SPLIT_LEVEL = 2
_CELL = 8  # fhog's cell size for dlib's face detector
_WINDOW_MAX = 81  # widest window at its own level, in pixels (see _to_level0)


class HogSplitUnavailable(RuntimeError):
    """The detector's serialisation is not the one this module knows."""


@dataclass(frozen=True)
class _Layout:
    """Where the two fields to change lie in the detector's serialisation."""

    data: bytes
    levels_at: tuple[int, int]  # max_pyramid_levels
    max_levels: int
    overlap_at: tuple[int, int]  # test_box_overlap: iou_thresh, percent_covered_thresh
    min_layer: tuple[int, int]  # min_pyramid_layer_width, min_pyramid_layer_height
    window_cells: tuple[int, int]  # fhog window width, height in cells (padding included)
    iou: float
    covered: float


def _pack_int(value: int) -> bytes:
    sign = 0x80 if value < 0 else 0
    body = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(body) | sign]) + body


def _pack_real(value: float) -> bytes:
    """dlib's float_details: mantissa and exponent, value = mantissa * 2**exponent."""
    mantissa, exponent = math.frexp(value)
    return _pack_int(int(mantissa * (1 << 53))) + _pack_int(exponent - 53)


def _layout(data: bytes) -> _Layout:
    """object_detector version 2: scanner, overlap tester, weight vectors."""
    reader = Reader(data)
    if reader.integer() != 2 or reader.integer() != 1:  # detector, scan_fhog_pyramid
        raise HogSplitUnavailable("not a version 2 object_detector of a version 1 scanner")
    if (reader.integer(), reader.integer()) != (0, 0):  # the feature pyramid: not saved
        raise HogSplitUnavailable("the detector was saved with a feature pyramid")
    cell, padding = reader.integer(), reader.integer()
    width, height = reader.integer(), reader.integer()
    start = reader.pos
    max_levels = reader.integer()
    levels_at = (start, reader.pos)
    min_layer = (reader.integer(), reader.integer())
    reader.real()  # nuclear norm regularisation (training only)
    reader.integer()  # dimensions
    start = reader.pos
    iou, covered = reader.real(), reader.real()
    overlap_at = (start, reader.pos)
    if cell != _CELL or padding != 0:
        raise HogSplitUnavailable(f"cell size {cell}, padding {padding}: not dlib's face "
                                  "detector layout")
    return _Layout(data, levels_at, max_levels, overlap_at, min_layer,
                   (width // cell, height // cell), iou, covered)


def _variant(layout: _Layout, levels: int) -> Any:
    """The detector with max_pyramid_levels = levels and no overlap suppression."""
    data = layout.data
    edited = (data[:layout.levels_at[0]] + _pack_int(levels)
              + data[layout.levels_at[1]:layout.overlap_at[0]]
              + _pack_real(1.0) + _pack_real(1.0) + data[layout.overlap_at[1]:])
    return _load(edited)


def _load(data: bytes) -> Any:
    # dlib's Python binding reads a detector from a path only.
    handle, path = tempfile.mkstemp(suffix=".svm")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        return dlib.fhog_object_detector(path)
    finally:
        os.unlink(path)


def _saved(detector: Any) -> bytes:
    handle, path = tempfile.mkstemp(suffix=".svm")
    os.close(handle)
    try:
        detector.save(path)
        with open(path, "rb") as saved:
            return saved.read()
    finally:
        os.unlink(path)


def _lround(value: float) -> int:
    """std::lround: halves away from zero (Python's round() takes them to even)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _on_lattice(x: int) -> bool:
    """fhog_to_image puts a window corner at 8m+1 +/- 4 (the sign of 8m+1 decides), so
    corners are 5 mod 8, and -3 is skipped (-11 is followed by 5)."""
    return x % _CELL == 5 and x != -3


def _lattice_step(x: int, steps: int) -> int:
    for _ in range(steps):
        x += 2 * _CELL if x == -11 else _CELL
    return x


class SplitHog:
    """dlib's HOG detector run as two halves, one on a helper thread."""

    def __init__(self, detector: Any, lock: threading.Lock, helper: Helper,
                 core_idle: Callable[[], bool] = lambda: True) -> None:
        layout = _layout(_saved(detector))
        self._full, self._lock, self._helper = detector, lock, helper
        self._core_idle = core_idle
        self._top = _variant(layout, SPLIT_LEVEL)
        self._bottom = _variant(layout, layout.max_levels)
        self._iou, self._covered = layout.iou, layout.covered
        self._min_layer, self._max_levels = layout.min_layer, layout.max_levels
        # A window spans window_cells - 1 lattice steps, from its first corner to its last.
        self._steps = (layout.window_cells[0] - 1, layout.window_cells[1] - 1)
        self._down6 = dlib.pyramid_down(6)
        self._down2 = dlib.pyramid_down(2)

    # The two halves ---------------------------------------------------------------

    def upsampled(self, pixels: Pixels, upsample: int) -> Pixels:
        """pyramid_up with pyramid_down<2>, `upsample` times, as run_detector_with_upscale
        does it (the size from rect_up, the pixels from bilinear resize_image)."""
        image = pixels
        for _ in range(upsample):
            h, w = image.shape[:2]
            up = self._down2.rect_up(dlib.rectangle(0, 0, w - 1, h - 1))
            image = dlib.resize_image(image, up.bottom() + 1, up.right() + 1)
        return image

    def top(self, image: Pixels, adjust_threshold: float) -> list[Hit]:
        return _hits(*self._top.run(image, 0, adjust_threshold))

    def bottom(self, image: Pixels, adjust_threshold: float) -> list[Hit] | None:
        """Levels SPLIT_LEVEL and below, in level-0 pixels; None when a window cannot be
        placed on exactly one level (the caller then scans in full)."""
        level = image
        for _ in range(SPLIT_LEVEL):
            level = self._down6(level)
        hits: list[Hit] = []
        for window, score, index in _hits(*self._bottom.run(level, 0, adjust_threshold)):
            rect = self._to_level0(window)
            if rect is None:
                return None
            hits.append((rect, score, index))
        return hits

    def _to_level0(self, rect: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        found: list[tuple[int, tuple[int, int, int, int]]] = []
        # A window is 73 or 81 pixels wide at its own level (81 when it straddles 0) and
        # each level enlarges it by 1.2: only the depths that fit that width can hold it.
        width = rect[2] - rect[0] + 1
        if width < 1:
            return None
        least = max(0, math.floor(math.log(width / (_WINDOW_MAX + 2)) / math.log(1.2)))
        for depth in range(least, least + 4):
            window = tuple(self._window_coordinate(c, depth) for c in rect)
            if None in window:
                continue
            left, top, right, bottom = (int(v) for v in window if v is not None)
            if (all(_on_lattice(v) for v in (left, top, right, bottom))
                    and right == _lattice_step(left, self._steps[0])
                    and bottom == _lattice_step(top, self._steps[1])):
                found.append((depth, (left, top, right, bottom)))
        if len(found) != 1:
            return None
        depth, (left, top, right, bottom) = found[0]
        window = dlib.rectangle(left, top, right, bottom)
        # The window found with Python's arithmetic must give back the helper's rectangle
        # by dlib's own: then the one rounding below is dlib's too.
        again = self._down6.rect_up(window, depth)
        if (again.left(), again.top(), again.right(), again.bottom()) != rect:
            return None
        mapped = self._down6.rect_up(window, SPLIT_LEVEL + depth)
        return mapped.left(), mapped.top(), mapped.right(), mapped.bottom()

    def _window_coordinate(self, value: int, depth: int) -> int | None:
        """The one integer that dlib's rect_up over `depth` levels rounds to `value`."""
        estimate = float(value)
        for _ in range(depth):
            estimate = (estimate - 0.3) * 5.0 / 6.0
        matches = [x for x in range(math.floor(estimate) - 2, math.floor(estimate) + 3)
                   if _lround(self._up(x, depth)) == value]
        return matches[0] if len(matches) == 1 else None

    @staticmethod
    def _up(x: float, depth: int) -> float:
        for _ in range(depth):
            x = x * (6 / 5.0) + 0.3  # pyramid_down<6>::point_up
        return x

    # Putting them together --------------------------------------------------------

    def levels(self, height: int, width: int) -> int:
        """create_fhog_pyramid's level count for an image of this size."""
        rect, count = dlib.rectangle(0, 0, width - 1, height - 1), 0
        while True:
            rect = self._down6.rect_down(rect)
            count += 1
            if (rect.width() < self._min_layer[0] or rect.height() < self._min_layer[1]
                    or count >= self._max_levels):
                return count

    def splits(self, image: Pixels) -> bool:
        """Whether the halves cover exactly the full scan's levels for this image."""
        h, w = image.shape[:2]
        full = self.levels(h, w)
        if full <= SPLIT_LEVEL:
            return False
        level = image.shape[:2]
        for _ in range(SPLIT_LEVEL):  # pyramid_down<6>::operator()'s output size
            level = (5 * level[0] // 6, 5 * level[1] // 6)
        return self.levels(*level) == full - SPLIT_LEVEL

    def merged(self, top: list[Hit], bottom: list[Hit], upsample: int) -> list[Hit] | None:
        """object_detector's non-max suppression over both halves, then the boxes mapped
        down through the upsampling (run_detector_with_upscale's rect_down). None when
        two windows score exactly the same: dlib orders those with an unstable sort, so
        only its own scan knows which one it keeps (an image repeating itself every 8
        pixels can do that)."""
        ranked = sorted(top + bottom, key=lambda h: h[1], reverse=True)
        if any(a[1] == b[1] for a, b in itertools.pairwise(ranked)):
            return None
        kept: list[Hit] = []
        for hit in ranked:
            if not any(self._overlap(k[0], hit[0]) for k in kept):
                kept.append(hit)
        if upsample == 0:
            return kept
        out: list[Hit] = []
        for rect, score, index in kept:
            down = self._down2.rect_down(dlib.rectangle(*rect), upsample)
            out.append(((down.left(), down.top(), down.right(), down.bottom()), score, index))
        return out

    def _overlap(self, a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
        """test_box_overlap: intersection over the bounding box of both, or over either."""
        inner = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
        if inner == 0:
            return False
        outer = _area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
        return (inner / outer > self._iou or inner / _area(a) > self._covered
                or inner / _area(b) > self._covered)

    def full(self, pixels: Pixels, upsample: int, adjust_threshold: float) -> list[Hit]:
        with self._lock:  # gunicorn threads share the detector (models.py)
            return _hits(*self._full.run(pixels, upsample, adjust_threshold))

    def run(self, pixels: Pixels, upsample: int, adjust_threshold: float) -> list[Hit]:
        """dlib's `run(pixels, upsample, adjust_threshold)`, on two threads when the helper
        is free and a core is idle. When the helper is busy (the other image of a
        compare), when every core is (splitting would only slow other requests), and
        whenever the halves cannot give dlib's answer, the full scan runs in the calling
        thread. The two halves' detectors are used only while the helper is held (one
        holder a process), so no two threads ever share them."""
        if not self._core_idle():
            return self.full(pixels, upsample, adjust_threshold)
        with self._helper() as submit:
            if submit is not None:
                image = self.upsampled(pixels, upsample)
                if self.splits(image):
                    below = submit(lambda: self.bottom(image, adjust_threshold))
                    above = self.top(image, adjust_threshold)
                    bottom = below.result()
                    merged = None if bottom is None else self.merged(above, bottom, upsample)
                    if merged is not None:
                        return merged
        return self.full(pixels, upsample, adjust_threshold)


def _hits(rects: Any, scores: Any, filters: Any) -> list[Hit]:
    """A detector's `run` result as (rectangle corners, score, filter index) tuples."""
    return [((r.left(), r.top(), r.right(), r.bottom()), float(s), int(f))
            for r, s, f in zip(rects, scores, filters, strict=True)]


def _area(rect: tuple[int, int, int, int]) -> int:
    """dlib's rectangle::area: inclusive corners, 0 when empty."""
    width, height = rect[2] - rect[0] + 1, rect[3] - rect[1] + 1
    return width * height if width > 0 and height > 0 else 0


__all__ = ["SPLIT_LEVEL", "HogSplitUnavailable", "SplitHog"]

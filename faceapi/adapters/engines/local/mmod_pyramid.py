"""The MMOD detector's input as dlib builds it, in numpy: the tiled image pyramid, the
2x up-sampling of `upsample_num_times`, and the maps between pyramid and image pixels.

dlib 20.0.1 facts this follows (no code copied):
- input_rgb_image_pyramid::to_tensor (dlib/dnn/input.h) lays the image and its
  pyramid_down<6> levels out side by side in one zero-filled tensor
  (compute_tiled_image_pyramid_details in dlib/image_transforms/image_pyramid.h): level
  sizes floor(5/6 * size) while a level is at least 5 rows; the levels run down a first
  column until the rest fits beside them, then up a second column from the bottom right;
  `padding` between levels, `outer_padding` around all. Level 0 holds
  (value - channel mean) / 256; each next level is resized from the previous one *in
  the tensor* (tt::resize_bilinear, i.e. resize_image on float images).
- resize_image with bilinear interpolation (dlib/image_transforms/interpolation.h):
  source position = destination index * (in - 1) / (out - 1); the float path works four
  columns at a time in single precision (positions accumulated in float, weights and
  sums in float) and finishes the row's last columns in double; the RGB path (used by
  pyramid_up) does the same and truncates to 0..255.
- pyramid_up (cnn_face_detector.cpp up-samples this way) makes an image of
  (2 rows + 1) x (2 columns + 2) pixels (pyramid_down<2>::rect_up of the image's
  rectangle, rounded) and resizes into it; detections come back through
  pyramid_down<2>::rect_down: p / 2 - (1.25, 0.75) per step.
- tiled_pyramid_to_image: a box's level is the tile nearest its centre (rounded to
  integer pixels); its corners, relative to that tile, go up one level at a time as
  p * 6/5 + 0.3 (pyramid_down<6>::point_up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Pixels = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]

# A level must have at least this many rows (image_pyramid.h).
_MIN_LEVEL_ROWS = 5


@dataclass(frozen=True)
class Tile:
    """One pyramid level's place in the tiled tensor (inclusive pixel bounds, as dlib)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1


@dataclass(frozen=True)
class Layout:
    rows: int
    columns: int
    tiles: tuple[Tile, ...]


def layout(rows: int, columns: int, *, down: int, padding: int, outer_padding: int) -> Layout:
    """Where each level of a rows x columns image goes (compute_tiled_image_pyramid_details)."""
    if rows * columns == 0:
        return Layout(0, 0, ())
    rate = (down - 1.0) / down
    sizes = [(rows, columns)]
    nr, nc = rows, columns
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < _MIN_LEVEL_ROWS:
            break
        sizes.append((nr, nc))
    total_height = sum(h + padding for h, _ in sizes) - 2 * padding
    height = prev_width = 0
    first_h, first_w = sizes[0]
    for h, w in sizes:
        # Down the first column until this level fits beside the one before it and the
        # column holds at least half the total height.
        if w <= first_w - prev_width - padding and (height - first_h) * 2 >= total_height - first_h:
            break
        height += h + padding
        prev_width = w
    height -= padding
    out_rows, out_cols = height + 2 * outer_padding, first_w + 2 * outer_padding
    tiles: list[Tile] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        h, w = sizes[i]
        tiles.append(Tile(outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    first = tiles[0]
    while i < len(sizes):
        h, w = sizes[i]
        right, bottom = outer_padding + first_w - 1, y - 1
        tile = Tile(right - (w - 1), bottom - (h - 1), right, bottom)
        # Stop rather than overlap the original image on the last row.
        if (max(tile.left, first.left) <= min(tile.right, first.right)
                and max(tile.top, first.top) <= min(tile.bottom, first.bottom)):
            break
        tiles.append(tile)
        y -= h + padding
        i += 1
    return Layout(out_rows, out_cols, tuple(tiles))


def _columns_simd(in_cols: int, out_cols: int) -> tuple[npt.NDArray[np.int64], Floats]:
    """The four-at-a-time part of a row: for each destination column it covers, the left
    source column and the fraction (float32). dlib adds 4 * scale to four float
    positions per group and stops at the first group whose fourth column's right
    neighbour is outside the source; that group always holds the row's last column, so
    the groups done never run past the row."""
    x_scale = (in_cols - 1) / max(out_cols - 1, 1)
    groups = out_cols // 4 + 2
    step = np.float32(4 * x_scale)
    lanes = []
    for j in range(4):
        seq = np.full(groups + 1, step, dtype=np.float32)
        seq[0] = np.float32(-4 * x_scale + j * x_scale)
        lanes.append(np.add.accumulate(seq, dtype=np.float32)[1:])
    xs = np.stack(lanes, axis=1)  # (groups, 4): positions of columns 4k .. 4k+3
    left = np.trunc(xs).astype(np.int64)
    stop = left[:, 3] + 1 >= in_cols
    count = int(np.argmax(stop)) if stop.any() else groups
    count = min(count, out_cols // 4)  # defensive: never past the row
    xs, left = xs[:count].reshape(-1), left[:count].reshape(-1)
    return left, (xs - left.astype(np.float32)).astype(np.float32)


def resize_float(src: Floats, out_rows: int, out_cols: int) -> Floats:
    """dlib's resize_image(float image -> float image), bilinear, same arithmetic."""
    in_rows, in_cols = src.shape
    out = np.empty((out_rows, out_cols), dtype=np.float32)
    if out.size == 0 or src.size == 0:
        return out
    y_scale = (in_rows - 1) / max(out_rows - 1, 1)
    ys = np.empty(out_rows, dtype=np.float64)
    y = -y_scale
    for r in range(out_rows):  # accumulated in double, as dlib does
        y += y_scale
        ys[r] = y
    top = np.floor(ys).astype(np.int64)
    bottom = np.minimum(top + 1, in_rows - 1)
    tb = ys - top
    left, frac = _columns_simd(in_cols, out_cols)
    n = left.size
    if n:
        lf, lft = frac[:n], left[:n]
        inv_lf = (np.float32(1) - lf).astype(np.float32)
        tb32 = tb.astype(np.float32)[:, None]
        inv_tb32 = (1.0 - tb).astype(np.float32)[:, None]
        tl, tr = src[top][:, lft], src[top][:, lft + 1]
        bl, br = src[bottom][:, lft], src[bottom][:, lft + 1]
        acc = (inv_tb32 * inv_lf) * tl
        acc = acc + (inv_tb32 * lf) * tr
        acc = acc + (tb32 * inv_lf) * bl
        acc = acc + (tb32 * lf) * br
        out[:, :n] = acc
    if n < out_cols:
        x_scale = (in_cols - 1) / max(out_cols - 1, 1)
        x = -x_scale + n * x_scale
        for c in range(n, out_cols):
            x += x_scale
            lc = math.floor(x)
            rc = min(lc + 1, in_cols - 1)
            lr = np.float32(x - lc)
            one = np.float32(1)
            upper = (one - lr) * src[top, lc] + lr * src[top, rc]
            lower = (one - lr) * src[bottom, lc] + lr * src[bottom, rc]
            out[:, c] = ((1.0 - tb) * upper.astype(np.float64)
                         + tb * lower.astype(np.float64)).astype(np.float32)
    return out


def tiled_pyramid(pixels: Pixels, mean: tuple[float, float, float], *, down: int,
                  padding: int, outer_padding: int) -> tuple[Floats, Layout]:
    """The (1, 3, rows, columns) float32 tensor input_rgb_image_pyramid makes of an RGB
    uint8 image, and its layout."""
    rows, cols = pixels.shape[:2]
    plan = layout(rows, cols, down=down, padding=padding, outer_padding=outer_padding)
    data = np.zeros((1, 3, plan.rows, plan.columns), dtype=np.float32)
    if not plan.tiles:
        return data, plan
    first = plan.tiles[0]
    for k in range(3):
        level = ((pixels[:, :, k].astype(np.float32) - np.float32(mean[k]))
                 / np.float32(256)).astype(np.float32)
        data[0, k, first.top:first.bottom + 1, first.left:first.right + 1] = level
        for prev, tile in zip(plan.tiles, plan.tiles[1:], strict=False):
            src = data[0, k, prev.top:prev.bottom + 1, prev.left:prev.right + 1]
            data[0, k, tile.top:tile.bottom + 1, tile.left:tile.right + 1] = resize_float(
                src, tile.height, tile.width)
    return data, plan


def pyramid_up(pixels: Pixels) -> Pixels:
    """dlib's pyramid_up(img) with pyramid_down<2>: RGB uint8, (2r + 1) x (2c + 2)."""
    rows, cols = pixels.shape[:2]
    out_rows, out_cols = 2 * rows + 1, 2 * cols + 2
    channels = [resize_float(pixels[:, :, k].astype(np.float32), out_rows, out_cols)
                for k in range(3)]
    # dlib's RGB path truncates its float sums (cvttps / static_cast).
    return np.ascontiguousarray(np.stack([np.trunc(c) for c in channels], axis=-1)
                                .clip(0, 255).astype(np.uint8))


def _nearest_tile(tiles: tuple[Tile, ...], x: int, y: int) -> int:
    """dlib's nearest_rect: the first tile holding the point, else the closest."""
    best, best_dist = 0, math.inf
    for i, t in enumerate(tiles):
        if t.left <= x <= t.right and t.top <= y <= t.bottom:
            return i
        nx, ny = min(max(x, t.left), t.right), min(max(y, t.top), t.bottom)
        dist = math.hypot(nx - x, ny - y)
        if dist < best_dist:
            best, best_dist = i, dist
    return best


def to_image(plan: Layout, box: tuple[float, float, float, float], *,
             down: int) -> tuple[float, float, float, float]:
    """A box in tensor pixels (left, top, right, bottom) -> image pixels
    (tiled_pyramid_to_image)."""
    left, top, right, bottom = box
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    level = _nearest_tile(plan.tiles, math.floor(cx + 0.5), math.floor(cy + 0.5))
    tile = plan.tiles[level]
    ratio = down / (down - 1.0)
    corners = [left - tile.left, top - tile.top, right - tile.left, bottom - tile.top]
    for _ in range(level):
        corners = [v * ratio + 0.3 for v in corners]
    return corners[0], corners[1], corners[2], corners[3]


def rect_down(box: tuple[int, int, int, int], levels: int) -> tuple[float, float, float, float]:
    """pyramid_down<2>::rect_down applied `levels` times (undoes pyramid_up)."""
    left, top, right, bottom = (float(v) for v in box)
    for _ in range(levels):
        left, top = left / 2.0 - 1.25, top / 2.0 - 0.75
        right, bottom = right / 2.0 - 1.25, bottom / 2.0 - 0.75
    return left, top, right, bottom

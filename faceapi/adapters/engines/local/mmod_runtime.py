"""dlib's MMOD CNN face detector on onnxruntime: the pyramid tensor (mmod_pyramid.py)
through the converted conv stack (mmod_convert.py), and the score map decoded to boxes
as dlib's loss_mmod_::to_label does (dlib 20.0.1, dlib/dnn/loss.h):

- every output position scoring above the threshold (0, strictly greater) is a
  detection; its centre in the tensor is found by walking the con layers from the
  output to the input (p * stride - padding + size / 2 each: here 8 p + 14), the
  detector window (80 x 80) is centred there (centred_drect: +-(size - 1) / 2) and
  mapped to image pixels through its pyramid tile, then rounded to integers (lround);
- detections sorted by score, highest first, are kept unless they overlap one already
  kept (test_box_overlap: intersection over the *bounding box of both* above the file's
  IoU threshold, 0.338, or intersection over either box's area above its covered
  threshold, 1.0);
- cnn_face_detection_model_v1 up-samples the image `upsample_num_times` with
  pyramid_up first and maps the boxes back with rect_down, rounded.

Boxes are (left, top, right, bottom, score) with dlib's inclusive integer corners, as
`dlib.cnn_face_detection_model_v1` returns them. Sessions are per process
(onnx_runtime.ProcessSession).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faceapi.adapters.engines.local import mmod_pyramid
from faceapi.adapters.engines.local.mmod_format import PYRAMID_DOWN, MmodNetwork, read_detector
from faceapi.adapters.engines.local.onnx_files import MMOD_INPUT_NAME, MMOD_OUTPUT_NAME
from faceapi.adapters.engines.local.onnx_runtime import ProcessSession

Pixels = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float, float]

# dlib keeps every position above the threshold before NMS; a pathological image could
# give hundreds of thousands, and NMS is quadratic in the kept ones. Only this many of
# the best are looked at (no image of the shared data set comes near: bench/mmod.py).
MAX_CANDIDATES = 2000


@dataclass(frozen=True)
class Decoder:
    """What turns an output map into boxes, read from the `.dat` file."""

    mean: tuple[float, float, float]
    padding: int
    outer_padding: int
    window_width: int
    window_height: int
    nms_iou: float
    nms_covered: float
    scale: int  # output position p -> tensor position scale * p + offset
    offset: int
    min_side: int  # the smallest tensor side the conv stack accepts (one output value)

    @classmethod
    def of(cls, network: MmodNetwork) -> Decoder:
        scale, offset, min_side = 1, 0, 1
        # Outermost con first, as dlib's visitor walks from the output to the input.
        for layer in network.layers:
            if layer.spec.kind == "con":
                spec = layer.spec
                offset = offset * spec.stride - layer.padding + spec.size // 2
                scale *= spec.stride
                min_side = max((min_side - 1) * spec.stride + spec.size - 2 * layer.padding, 1)
        (window,) = network.options.windows
        return cls(mean=network.pyramid.mean, padding=network.pyramid.padding,
                   outer_padding=network.pyramid.outer_padding, window_width=window.width,
                   window_height=window.height, nms_iou=network.options.nms_iou,
                   nms_covered=network.options.nms_covered, scale=scale, offset=offset,
                   min_side=min_side)


def _lround(value: float) -> int:
    """C's lround: halves away from zero."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _area(left: int, top: int, right: int, bottom: int) -> int:
    return max(0, right - left + 1) * max(0, bottom - top + 1)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], iou: float,
              covered: float) -> bool:
    inner = _area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    if inner == 0:
        return False
    outer = _area(min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    return (inner / outer > iou or inner / _area(*a) > covered
            or inner / _area(*b) > covered)


def decode(scores: npt.NDArray[np.float32], plan: mmod_pyramid.Layout, decoder: Decoder,
           threshold: float = 0.0) -> list[Box]:
    """Boxes in the pixels of the image the pyramid was built from, best first."""
    rows, cols = np.nonzero(scores > threshold)
    values = scores[rows, cols]
    order = np.argsort(-values, kind="stable")[:MAX_CANDIDATES]
    half_w, half_h = (decoder.window_width - 1) / 2.0, (decoder.window_height - 1) / 2.0
    kept: list[tuple[int, int, int, int]] = []
    found: list[Box] = []
    for i in order:
        px = float(decoder.scale * int(cols[i]) + decoder.offset)
        py = float(decoder.scale * int(rows[i]) + decoder.offset)
        box = mmod_pyramid.to_image(plan, (px - half_w, py - half_h, px + half_w, py + half_h),
                                    down=PYRAMID_DOWN)
        rect = (_lround(box[0]), _lround(box[1]), _lround(box[2]), _lround(box[3]))
        if any(_overlaps(k, rect, decoder.nms_iou, decoder.nms_covered) for k in kept):
            continue
        kept.append(rect)
        found.append((float(rect[0]), float(rect[1]), float(rect[2]), float(rect[3]),
                      float(values[i])))
    return found


class OnnxMmodDetector:
    """`dlib.cnn_face_detection_model_v1` on onnxruntime (same boxes; bench/mmod.py)."""

    def __init__(self, model: Path | bytes, source: Path, *, threads: int) -> None:
        self._session = ProcessSession(model, threads=threads)
        self.decoder = Decoder.of(read_detector(source.read_bytes()))

    def scores(self, pixels: Pixels) -> tuple[npt.NDArray[np.float32], mmod_pyramid.Layout]:
        """The network's score map for an RGB image, and the pyramid's layout."""
        d = self.decoder
        tensor, plan = mmod_pyramid.tiled_pyramid(pixels, d.mean, down=PYRAMID_DOWN,
                                                  padding=d.padding,
                                                  outer_padding=d.outer_padding)
        if not plan.tiles or min(plan.rows, plan.columns) < d.min_side:
            # Too small for the stack's three unpadded stride-2 layers (under 29 px
            # with the 22 px border: images under 7 px), and for any face.
            return np.zeros((0, 0), dtype=np.float32), plan
        (out,) = self._session.get().run([MMOD_OUTPUT_NAME], {MMOD_INPUT_NAME: tensor})
        return np.asarray(out, dtype=np.float32)[0, 0], plan

    def __call__(self, pixels: Pixels, upsample: int = 0, threshold: float = 0.0) -> list[Box]:
        """Detections (left, top, right, bottom, score), inclusive integer corners in
        `pixels`, best first, as dlib's detector(pixels, upsample) gives them."""
        image = np.ascontiguousarray(pixels, dtype=np.uint8)
        for _ in range(upsample):
            image = mmod_pyramid.pyramid_up(image)
        scores, plan = self.scores(image)
        if scores.size == 0:
            return []
        boxes = decode(scores, plan, self.decoder, threshold)
        if upsample == 0:
            return boxes
        mapped: list[Box] = []
        for left, top, right, bottom, score in boxes:
            down = mmod_pyramid.rect_down((int(left), int(top), int(right), int(bottom)),
                                          upsample)
            mapped.append((float(_lround(down[0])), float(_lround(down[1])),
                           float(_lround(down[2])), float(_lround(down[3])), score))
        return mapped

    def warm(self) -> None:
        self._session.get()

"""Face detection with dlib: HOG (default) or MMOD CNN, downscaling for big images,
orientation search, and the detector-score to Confidence map.

Coordinates: every rectangle here is in pixels of the (orientation-corrected) full
resolution image, as floats (left, top, right, bottom).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import dlib
import numpy as np
import numpy.typing as npt

from faceapi.adapters.engines.local.models import CNN, Models
from faceapi.domain.faces import OrientationCorrection

Pixels = npt.NDArray[np.uint8]

# HOG detections scoring below this are dropped. 0.0 is dlib's own default threshold.
# Measured on the shared data set (bench/accuracy.py, threshold lowered to -1): the 123
# known faces scored 0.004 to 3.2; of 302 false detections one scored 0.097 and the
# rest <= -0.18. A higher cut-off would lose real faces (0.004, 0.12) for one false one.
HOG_SCORE_THRESHOLD = 0.0
# MMOD CNN detections scoring below this are dropped (dlib's default for the CNN too).
CNN_SCORE_THRESHOLD = 0.0

# Confidence = 100 / (1 + exp(-slope * (score - midpoint))): a logistic on the
# detector's score. HOG: fitted by bench/accuracy.py (logistic regression of "is a face"
# on the score, L2 penalty 1 on the slope, faces vs. false detections), giving 22.8 at
# the drop threshold, 50 at 0.28, 95 at 0.96, 99 at 1.34. CNN: fitted the same way by
# bench/mmod.py on the onnx CNN at the `cnn` fallback's image size (123 faces, 30 false
# detections, none of them scoring 0 or more), giving 65 at the drop threshold, 50 at
# -0.18, 98 at 1. Both maps are monotone in the score.
HOG_CONFIDENCE_SLOPE = 4.35
HOG_CONFIDENCE_MIDPOINT = 0.28
CNN_CONFIDENCE_SLOPE = 3.38
CNN_CONFIDENCE_MIDPOINT = -0.18

# np.rot90 turns counter-clockwise by 90 degrees * k. An image whose content is turned
# N degrees clockwise (the data set's `rotated_N`) is made upright by k = N / 90; the
# correction reported is the rotation found in the input (docs/accuracy.md).
_SEARCH_ORDER = (
    (1, OrientationCorrection.ROTATE_90),
    (3, OrientationCorrection.ROTATE_270),
    (2, OrientationCorrection.ROTATE_180),
)


@dataclass(frozen=True)
class RawFace:
    """A detection in full-resolution pixels with its 68 landmarks."""

    left: float
    top: float
    right: float
    bottom: float
    score: float
    confidence: float
    shape68: Any  # dlib.full_object_detection, 68 parts
    points: npt.NDArray[np.float64]  # (68, 2) x, y

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def dlib_rect(self) -> Any:
        return dlib.rectangle(round(self.left), round(self.top),
                              round(self.right), round(self.bottom))


@dataclass(frozen=True)
class FoundFaces:
    """Detection result on one (possibly rotated) image."""

    pixels: Pixels  # the image the faces refer to (rotated when a correction applies)
    faces: tuple[RawFace, ...]
    orientation_correction: OrientationCorrection | None


def score_to_confidence(score: float, detector: str) -> float:
    """Detector score -> Confidence 0-100 (logistic, monotone increasing)."""
    slope, midpoint = ((CNN_CONFIDENCE_SLOPE, CNN_CONFIDENCE_MIDPOINT) if detector == CNN
                       else (HOG_CONFIDENCE_SLOPE, HOG_CONFIDENCE_MIDPOINT))
    z = slope * (score - midpoint)
    # Written so neither branch overflows for extreme scores.
    if z >= 0:
        return 100.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return 100.0 * e / (1.0 + e)


def downscale_factor(shape: tuple[int, ...], max_side: int) -> float:
    """The scale `downscale` shrinks an image of this shape by: 1.0 when its longer side
    is within max_side (or max_side is 0, no limit)."""
    longest = max(shape[:2])
    return 1.0 if max_side <= 0 or longest <= max_side else max_side / longest


def downscale(pixels: Pixels, max_side: int) -> tuple[Pixels, float]:
    """Shrink so the longer side is at most max_side; returns the image and the scale."""
    h, w = pixels.shape[:2]
    scale = downscale_factor(pixels.shape, max_side)
    if scale == 1.0:
        return pixels, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small, dtype=np.uint8), scale


def raw_detections(pixels: Pixels, models: Models, upsample: int,
                   adjust_threshold: float = 0.0) -> list[tuple[float, float, float, float, float]]:
    """Run the detector on `pixels` as given: (left, top, right, bottom, score) in its
    pixels. `adjust_threshold` lowers the cut-off (used by the bench to see false
    detections); dlib's CNN ignores it."""
    if models.detector_kind == CNN and models.mmod is not None:
        # The same boxes and scores as dlib's CNN below, on onnxruntime (mmod_runtime).
        return list(models.mmod(pixels, upsample, adjust_threshold))
    if models.cnn is not None:
        found = []
        with models.lock:
            detections = models.cnn(pixels, upsample)
        for det in detections:
            r = det.rect
            found.append((float(r.left()), float(r.top()), float(r.right()),
                          float(r.bottom()), float(det.confidence)))
        return found
    if models.split is not None:
        # dlib's answer, on two cores when the helper thread is free (hog_split.py).
        return [(float(rect[0]), float(rect[1]), float(rect[2]), float(rect[3]), score)
                for rect, score, _ in models.split.run(pixels, upsample, adjust_threshold)]
    with models.lock:
        rects, scores, _ = models.hog.run(pixels, upsample, adjust_threshold)
    return [(float(r.left()), float(r.top()), float(r.right()), float(r.bottom()), float(s))
            for r, s in zip(rects, scores, strict=True)]


# HOG's smallest face window is 80 px, halved by each upsampling step (20 px at
# upsample 2), and the CNN's is similar: an image with a side under this cannot hold a
# detectable face. Skipping it also keeps degenerate arrays (1 px wide, whose numpy
# strides dlib rejects) away from dlib.
MIN_DETECT_SIDE = 16


Box = tuple[float, float, float, float, float]


def _boxes(small: Pixels, models: Models, upsample: int) -> list[Box]:
    """Detections above the detector's threshold, in the pixels of `small`."""
    if min(small.shape[:2]) < MIN_DETECT_SIDE:
        return []
    threshold = CNN_SCORE_THRESHOLD if models.detector_kind == CNN else HOG_SCORE_THRESHOLD
    return [b for b in raw_detections(small, models, upsample) if b[4] >= threshold]


def _landmarked(pixels: Pixels, boxes: list[Box], scale: float, models: Models,
                detector: str | None = None) -> list[RawFace]:
    """Boxes found at `scale` mapped back to `pixels`, with 68 landmarks placed there.
    `detector` names the detector whose score map gives the confidence (default: the
    configured one)."""
    h, w = pixels.shape[:2]
    kind = detector or models.detector_kind
    faces: list[RawFace] = []
    for left, top, right, bottom, score in boxes:
        # dlib rectangles are inclusive; +1 makes right/bottom exclusive edges.
        box = (left / scale, top / scale, (right + 1) / scale, (bottom + 1) / scale)
        rect = dlib.rectangle(round(box[0]), round(box[1]),
                              round(box[2]) - 1, round(box[3]) - 1)
        shape = models.shape68(pixels, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        faces.append(RawFace(
            left=max(0.0, box[0]), top=max(0.0, box[1]),
            right=min(float(w), box[2]), bottom=min(float(h), box[3]),
            score=score, confidence=score_to_confidence(score, kind),
            shape68=shape, points=points))
    faces.sort(key=lambda f: f.score, reverse=True)
    return faces


def detect_upright(pixels: Pixels, models: Models, upsample: int, max_side: int) -> list[RawFace]:
    """Detect on a downscaled copy, map boxes back, place 68 landmarks at full size."""
    if min(pixels.shape[:2]) < MIN_DETECT_SIDE:
        return []
    small, scale = downscale(pixels, max_side)
    return _landmarked(pixels, _boxes(small, models, upsample), scale, models)


# FACEAPI_DETECT_STRATEGY=adaptive (docs/engines.md, "Cheaper detection"): a first pass
# without upsampling is kept when every face it finds is at least this wide in the
# detection image (twice HOG's 80 px window), on the bet that such a photo holds no
# face small enough to need upsampling; otherwise the configured upsampling runs as with
# `fixed`. Upsampling 1 costs about 4x a pass without (bench/results/latency_detect.md).
ADAPTIVE_LARGE_FACE = 160


def _upright_boxes(small: Pixels, models: Models, upsample: int, adaptive: bool) -> list[Box]:
    if adaptive and upsample > 0:
        first = _boxes(small, models, 0)
        if first and min(b[2] - b[0] + 1 for b in first) >= ADAPTIVE_LARGE_FACE:
            return first
    return _boxes(small, models, upsample)


# Hard-photo fallbacks (FACEAPI_DETECT_FALLBACK; bench/degraded.py measures them). They
# run only after every normal pass found nothing, so a photo with a face HOG sees is
# answered exactly as without them, and only face-less (or hard) images pay.
CLAHE_CLIP = 2.0
CLAHE_TILES = 8
# A dark photo is a noisy one (sensor noise, lifted by the equalisation as much as the
# face); smoothing first keeps HOG's gradients on the face's edges. Sigma 1.5 found
# the fixture faces darkened to 5-10% with noise sigma 3-6 that CLAHE alone missed.
DENOISE_SIGMA = 1.5
# HOG's frontal templates tolerate roll up to about 15-20 degrees; copies turned this
# far either way cover rolls of about 10-45 degrees.
ROLL_DEGREES = (28.0, -28.0)
# The fallbacks work on a copy at most this large (longer side): a face hard enough to
# need them in a big photo is not a tiny one, and a face-less 1600 px image would
# otherwise pay ~3x its normal detection time again (HOG at upsample 1 costs ~0.5 s at
# 1000 px and ~1.9 s at 1600 px: bench/results/latency_detect.md).
FALLBACK_MAX_SIDE = 1000
# One more upsampling step quadruples the pass's cost: only for images this small,
# where the faces that need it are (~0.8 s at 640 px and upsample 2).
UPSAMPLE_FALLBACK_MAX_SIDE = 640


# The `cnn` fallback: dlib's MMOD CNN on onnxruntime (mmod_runtime.py) over a copy whose
# longer side is at most CNN_FALLBACK_MAX_SIDE, up-sampled once when it is at most
# CNN_UPSAMPLE_MAX_SIDE (the CNN's window is 80 px; its pyramid only goes down). The
# CNN costs ~1.05 s per megapixel of its input on this machine (bench/results/mmod.md),
# and its input is at most 800x800 (or 802x802 up-sampled): a face-less photo pays at
# most about 0.7 s more for it.
CNN_FALLBACK_MAX_SIDE = 800
CNN_UPSAMPLE_MAX_SIDE = 400
# The 68-point shape predictor was trained on HOG's boxes; MMOD's are placed and sized
# differently (smaller, higher). A CNN box (centre x, centre y, side) becomes
# (cx + SHIFT_X * side, cy + SHIFT_Y * side, side * SCALE) before landmarks are placed
# and the box reported: medians over 71 faces both detectors find, fitted by
# bench/mmod.py; on 71 other faces the landmarks' mean error against those placed on
# HOG's box fell from 0.031 to 0.020 inter-ocular distances (bench/results/mmod.md).
CNN_BOX_SHIFT_X = 0.049
CNN_BOX_SHIFT_Y = 0.088
CNN_BOX_SCALE = 1.092


def hog_like(box: Box) -> Box:
    """An MMOD box (inclusive corners) as HOG would have placed it (see above)."""
    left, top, right, bottom, score = box
    side = ((right - left + 1) + (bottom - top + 1)) / 2.0
    cx = (left + right + 1) / 2.0 + CNN_BOX_SHIFT_X * side
    cy = (top + bottom + 1) / 2.0 + CNN_BOX_SHIFT_Y * side
    half = side * CNN_BOX_SCALE / 2.0
    return (cx - half, cy - half, cx + half - 1, cy + half - 1, score)


def _cnn_fallback_boxes(small: Pixels, models: Models) -> tuple[list[Box], float]:
    """CNN detections on a bounded copy of `small`, HOG-like, in `small`'s pixels; and
    the copy's scale relative to `small`."""
    if models.mmod is None or min(small.shape[:2]) < MIN_DETECT_SIDE:
        return [], 1.0
    copy, shrink = downscale(small, CNN_FALLBACK_MAX_SIDE)
    upsample = 1 if max(copy.shape[:2]) <= CNN_UPSAMPLE_MAX_SIDE else 0
    boxes = [b for b in models.mmod(copy, upsample) if b[4] >= CNN_SCORE_THRESHOLD]
    return [hog_like(b) for b in boxes], shrink


def _clahe(pixels: Pixels) -> Pixels:
    """Smoothed, contrast-limited histogram equalisation of the luminance, as grey RGB:
    lifts dark and washed-out faces to the contrast HOG's gradients need."""
    gray = cv2.GaussianBlur(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), (0, 0), DENOISE_SIGMA)
    equalised = cv2.createCLAHE(clipLimit=CLAHE_CLIP,
                                tileGridSize=(CLAHE_TILES, CLAHE_TILES)).apply(gray)
    return np.ascontiguousarray(np.stack([equalised] * 3, axis=-1))


def _rotation(shape: tuple[int, ...], degrees: float, scale: float = 1.0) -> tuple[
        Any, tuple[int, int]]:
    """The affine map turning an image of `shape` by `degrees` (counter-clockwise)
    about its centre onto a canvas large enough to hold all of it."""
    h, w = shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), degrees, scale)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    out_w, out_h = math.ceil(h * sin + w * cos), math.ceil(h * cos + w * sin)
    matrix[0, 2] += out_w / 2.0 - w / 2.0 * scale
    matrix[1, 2] += out_h / 2.0 - h / 2.0 * scale
    return matrix, (out_w, out_h)


def _apply(matrix: Any, x: float, y: float) -> tuple[float, float]:
    return (float(matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]),
            float(matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]))


def _rolled_faces(pixels: Pixels, small: Pixels, scale: float, models: Models,
                  upsample: int) -> list[RawFace]:
    """Detect on copies of `small` turned +-ROLL_DEGREES; a face found there gets its
    landmarks on the full-size image turned the same way, then landmarks and box are
    mapped back to `pixels` (the descriptor's chip is cut along the eyes, so the roll is
    undone there)."""
    for degrees in ROLL_DEGREES:
        turn_small, size_small = _rotation(small.shape, degrees)
        turned = np.ascontiguousarray(cv2.warpAffine(small, turn_small, size_small),
                                      dtype=np.uint8)
        boxes = _boxes(turned, models, upsample)
        if not boxes:
            continue
        back_small = cv2.invertAffineTransform(turn_small)
        turn_full, size_full = _rotation(pixels.shape, degrees)
        turned_full = np.ascontiguousarray(cv2.warpAffine(pixels, turn_full, size_full),
                                           dtype=np.uint8)
        back_full = cv2.invertAffineTransform(turn_full)
        h, w = pixels.shape[:2]
        faces = []
        for left, top, right, bottom, score in boxes:
            # Box centre: turned-small -> small -> full -> turned-full; size / scale.
            cx, cy = _apply(back_small, (left + right + 1) / 2.0, (top + bottom + 1) / 2.0)
            fx, fy = _apply(turn_full, cx / scale, cy / scale)
            half_w, half_h = (right + 1 - left) / scale / 2.0, (bottom + 1 - top) / scale / 2.0
            rect = dlib.rectangle(round(fx - half_w), round(fy - half_h),
                                  round(fx + half_w) - 1, round(fy + half_h) - 1)
            turned_shape = models.shape68(turned_full, rect)
            points = np.array([_apply(back_full, p.x, p.y) for p in turned_shape.parts()],
                              dtype=np.float64)
            ox, oy = _apply(back_full, fx, fy)
            box = (ox - half_w, oy - half_h, ox + half_w, oy + half_h)
            shape = dlib.full_object_detection(
                dlib.rectangle(round(box[0]), round(box[1]), round(box[2]) - 1,
                               round(box[3]) - 1),
                [dlib.point(round(x), round(y)) for x, y in points])
            faces.append(RawFace(
                left=max(0.0, box[0]), top=max(0.0, box[1]),
                right=min(float(w), box[2]), bottom=min(float(h), box[3]),
                score=score, confidence=score_to_confidence(score, models.detector_kind),
                shape68=shape, points=points))
        faces.sort(key=lambda f: f.score, reverse=True)
        return faces
    return []


def fallback_faces(pixels: Pixels, small: Pixels, scale: float, models: Models, *,
                   upsample: int, fallbacks: tuple[str, ...]) -> list[RawFace]:
    """The hard-photo fallbacks, in order, until one finds a face (see above)."""
    small, shrink = downscale(small, FALLBACK_MAX_SIDE)
    scale *= shrink
    for fallback in fallbacks:
        if fallback == "contrast":
            boxes = _boxes(_clahe(small), models, upsample)
            if boxes:
                # Landmarks on the equalised image (a dark face's contours are
                # invisible to the shape model too); the descriptor and the quality
                # measures still read the original pixels.
                found = _landmarked(_clahe(pixels), boxes, scale, models)
                return found
        elif fallback == "roll":
            faces = _rolled_faces(pixels, small, scale, models, upsample)
            if faces:
                return faces
        elif (fallback == "upsample" and upsample < 2
              and max(small.shape[:2]) <= UPSAMPLE_FALLBACK_MAX_SIDE):
            boxes = _boxes(small, models, upsample + 1)
            if boxes:
                return _landmarked(pixels, boxes, scale, models)
        elif fallback == "cnn":
            boxes, shrink = _cnn_fallback_boxes(small, models)
            if boxes:
                return _landmarked(pixels, boxes, scale * shrink, models, CNN)
    return []


def find_faces(pixels: Pixels, models: Models, *, upsample: int, max_side: int,
               orientation_search: bool, adaptive: bool = False,
               fallbacks: tuple[str, ...] = ()) -> FoundFaces:
    """Detect faces; when none is upright and orientation search is on, try the three
    other right-angle rotations and keep the first that has a face.

    orientation_correction: ROTATE_0 when the search is on and faces were found as
    given; the rotation found otherwise; None when the search is off or no rotation
    shows a face (we then know nothing about the orientation)."""
    # dlib needs C-contiguous uint8 RGB; intake guarantees it, other callers may not.
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    pixels = np.ascontiguousarray(pixels[..., :3], dtype=np.uint8)
    if min(pixels.shape[:2]) < MIN_DETECT_SIDE:
        return FoundFaces(pixels, (), None)
    small, scale = downscale(pixels, max_side)
    faces = _landmarked(pixels, _upright_boxes(small, models, upsample, adaptive), scale, models)
    if not faces and fallbacks and not orientation_search:
        faces = fallback_faces(pixels, small, scale, models, upsample=upsample,
                               fallbacks=fallbacks)
    if faces or not orientation_search:
        return FoundFaces(pixels, tuple(faces),
                          OrientationCorrection.ROTATE_0 if orientation_search and faces else None)
    # The search turns the downscaled copy; the full-size image is turned (one copy)
    # only for the rotation that shows a face, so a large image without a face never
    # costs a full-size rotated copy. The turned passes upsample one step less: a
    # sideways phone photo's face is large, and at upsample 1 each pass costs ~4x the
    # upright one, so a face-less 1600 px image took four full passes (~5 s on 2 busy
    # cores, over the 5 s request budget of docs/security.md); now ~2 s.
    turned_upsample = max(0, upsample - 1)
    for k, correction in _SEARCH_ORDER:
        boxes = _boxes(np.ascontiguousarray(np.rot90(small, k)), models, turned_upsample)
        if boxes:
            rotated = np.ascontiguousarray(np.rot90(pixels, k))
            return FoundFaces(rotated, tuple(_landmarked(rotated, boxes, scale, models)),
                              correction)
    if fallbacks:
        found = fallback_faces(pixels, small, scale, models, upsample=upsample,
                               fallbacks=fallbacks)
        if found:
            return FoundFaces(pixels, tuple(found), OrientationCorrection.ROTATE_0)
    return FoundFaces(pixels, (), None)

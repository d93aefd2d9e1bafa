"""Face attributes computed from dlib's 68 landmarks and the face pixels.

Landmark names are Rekognition's `LandmarkType` values. "Left" and "right" are the
image's left and right as seen by the viewer (so `eyeLeft` is the subject's right
eye): Rekognition's published DetectFaces examples have eyeLeft.X < eyeRight.X for
frontal faces, and the iBUG 68-point scheme dlib uses is ordered the same way
(points 36-41 are the eye on the image's left). docs/accuracy.md has the table.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from faceapi.domain.faces import BooleanAttribute, Landmark, Pose, Quality

Points = npt.NDArray[np.float64]
Pixels = npt.NDArray[np.uint8]

# Rekognition landmark type -> the iBUG 68 indices whose mean is the point.
# Pupils: the 68-point model has no pupil point; the eye-contour centre is used
# (it coincides with the pupil for a forward gaze; documented as an approximation).
LANDMARK_POINTS: dict[str, tuple[int, ...]] = {
    "eyeLeft": (36, 37, 38, 39, 40, 41),
    "eyeRight": (42, 43, 44, 45, 46, 47),
    "nose": (30,),
    "mouthLeft": (48,),
    "mouthRight": (54,),
    "leftEyeBrowLeft": (17,),
    "leftEyeBrowRight": (21,),
    "leftEyeBrowUp": (19,),
    "rightEyeBrowLeft": (22,),
    "rightEyeBrowRight": (26,),
    "rightEyeBrowUp": (24,),
    "leftEyeLeft": (36,),
    "leftEyeRight": (39,),
    "leftEyeUp": (37, 38),
    "leftEyeDown": (40, 41),
    "rightEyeLeft": (42,),
    "rightEyeRight": (45,),
    "rightEyeUp": (43, 44),
    "rightEyeDown": (46, 47),
    "noseLeft": (31,),
    "noseRight": (35,),
    "mouthUp": (51,),
    "mouthDown": (57,),
    "leftPupil": (36, 37, 38, 39, 40, 41),
    "rightPupil": (42, 43, 44, 45, 46, 47),
    "upperJawlineLeft": (0,),
    "midJawlineLeft": (4,),
    "chinBottom": (8,),
    "midJawlineRight": (12,),
    "upperJawlineRight": (16,),
}
DEFAULT_LANDMARKS = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")


def _clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


def landmarks(points: Points, width: int, height: int,
              names: tuple[str, ...]) -> tuple[Landmark, ...]:
    """Named landmarks as x/y ratios of the image, clipped to [0, 1]."""
    out = []
    for name in names:
        x, y = points[list(LANDMARK_POINTS[name])].mean(axis=0)
        out.append(Landmark(type=name, x=_clip01(float(x) / width), y=_clip01(float(y) / height)))
    return tuple(out)


# A generic 3D face (millimetre-like units) in camera axes: x to the image's right,
# y down, z away from the camera. Points: nose tip, chin, outer corner of the eye on
# the image's left, of the eye on the image's right, mouth corners left and right.
_MODEL_3D = np.array([
    (0.0, 0.0, 0.0),
    (0.0, 330.0, 65.0),
    (-225.0, -170.0, 135.0),
    (225.0, -170.0, 135.0),
    (-150.0, 150.0, 125.0),
    (150.0, 150.0, 125.0),
], dtype=np.float64)
_MODEL_INDICES = (30, 8, 36, 45, 48, 54)


def pose(points: Points, width: int, height: int) -> Pose:
    """Roll, yaw, pitch in degrees from solvePnP on six landmarks.

    Signs (ours; Rekognition does not document its own): roll > 0 when the face is
    turned clockwise in the image, yaw > 0 when the face turns toward the image's right
    (the subject's left), pitch > 0 when the face tilts up. Roll comes from the eye line,
    which is more stable than the PnP roll for small faces."""
    image_points = points[list(_MODEL_INDICES)].astype(np.float64)
    focal = float(max(width, height))
    camera = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    ok, rvec, _tvec = cv2.solvePnP(_MODEL_3D, image_points, camera, np.zeros(4),
                                   flags=cv2.SOLVEPNP_ITERATIVE)
    left_eye = points[36:42].mean(axis=0)
    right_eye = points[42:48].mean(axis=0)
    roll = math.degrees(math.atan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0]))
    if not ok:
        return Pose(roll=round(roll, 2), yaw=0.0, pitch=0.0)
    rotation, _ = cv2.Rodrigues(rvec)
    angles = cv2.RQDecomp3x3(rotation)[0]
    pitch_raw, yaw_raw = float(angles[0]), float(angles[1])
    # RQDecomp gives rotations about camera x (down-facing y axis => positive = nose
    # down) and y (positive = face turned toward the image's left, seen from the camera).
    pitch = -pitch_raw
    yaw = -yaw_raw
    return Pose(roll=round(_wrap(roll), 2), yaw=round(_wrap(yaw), 2), pitch=round(_wrap(pitch), 2))


def _wrap(angle: float) -> float:
    """Angle in (-180, 180]."""
    a = (angle + 180.0) % 360.0 - 180.0
    return 180.0 if a == -180.0 else a


# Sharpness: variance of the Laplacian of the face resized to 128 px wide grey, mapped
# with 100 * (1 - exp(-var / SHARPNESS_SCALE)). Resizing first makes the value a property
# of the face, not of its pixel size. SHARPNESS_SCALE is the median variance of the 123
# faces of the shared data set (403, bench/accuracy.py), so a typical face reads 63, a
# face twice as "busy" 86, a blurred one with a quarter of it 22.
SHARPNESS_SIZE = 128
SHARPNESS_SCALE = 400.0


def _face_grey(pixels: Pixels, left: float, top: float, right: float,
               bottom: float) -> npt.NDArray[np.uint8] | None:
    h, w = pixels.shape[:2]
    x0, y0 = max(0, int(left)), max(0, int(top))
    x1, y1 = min(w, math.ceil(right)), min(h, math.ceil(bottom))
    if x1 <= x0 or y1 <= y0:
        return None
    crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
    return np.asarray(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), dtype=np.uint8)


def laplacian_variance(grey: npt.NDArray[np.uint8]) -> float:
    """Variance of the Laplacian of the face resized to SHARPNESS_SIZE px wide."""
    scale = SHARPNESS_SIZE / grey.shape[1]
    resized = cv2.resize(grey, (SHARPNESS_SIZE, max(1, round(grey.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(resized, cv2.CV_64F).var())


def quality(pixels: Pixels, left: float, top: float, right: float, bottom: float) -> Quality:
    """Brightness = mean luma (BT.601) of the face box, 0-100; sharpness as above."""
    grey = _face_grey(pixels, left, top, right, bottom)
    if grey is None:
        return Quality(brightness=0.0, sharpness=0.0)
    brightness = float(grey.mean()) / 255.0 * 100.0
    sharpness = 100.0 * (1.0 - math.exp(-laplacian_variance(grey) / SHARPNESS_SCALE))
    return Quality(brightness=round(brightness, 2), sharpness=round(sharpness, 2))


def face_laplacian_variance(pixels: Pixels, left: float, top: float, right: float,
                            bottom: float) -> float:
    """The raw value behind `quality().sharpness` (the bench calibrates on it)."""
    grey = _face_grey(pixels, left, top, right, bottom)
    return 0.0 if grey is None else laplacian_variance(grey)


# Eye aspect ratio (EAR): mean eyelid opening / eye width over both eyes. Open eyes
# measure about 0.25-0.35 and closed eyes below about 0.15 in the landmark literature;
# on the shared data set open eyes read 0.22-0.46 and a squint 0.18. EYES_OPEN_EAR is
# the decision point; the confidence is a logistic of the distance from it (50 at the
# decision point, 73 one spread away, 95 three spreads away).
# Mouth aspect ratio (MAR): mean inner-lip opening / inner mouth width. On the data set
# wide-open mouths read 0.43-0.54, closed ones mostly < 0.1, but a closed mouth with
# dark lipstick read 0.27 and a smile with teeth 0.21: the 68-point inner lips are
# imprecise, so MAR near the decision point gets a confidence near 50.
EYES_OPEN_EAR = 0.20
EAR_SPREAD = 0.03
MOUTH_OPEN_MAR = 0.30
MAR_SPREAD = 0.06


def _dist(points: Points, a: int, b: int) -> float:
    return float(np.linalg.norm(points[a] - points[b]))


def eye_aspect_ratio(points: Points) -> float:
    def one(first: int) -> float:
        # Points first..first+5 run corner, upper lid x2, corner, lower lid x2.
        p = [first + i for i in range(6)]
        opening = _dist(points, p[1], p[5]) + _dist(points, p[2], p[4])
        return opening / (2.0 * max(_dist(points, p[0], p[3]), 1e-6))

    return (one(36) + one(42)) / 2.0


def mouth_aspect_ratio(points: Points) -> float:
    opening = (_dist(points, 61, 67) + _dist(points, 62, 66) + _dist(points, 63, 65)) / 3.0
    return opening / max(_dist(points, 60, 64), 1e-6)


def _boolean(ratio: float, decision: float, spread: float) -> BooleanAttribute:
    z = (ratio - decision) / spread
    confidence = 100.0 / (1.0 + math.exp(-abs(z))) if abs(z) < 700 else 100.0
    return BooleanAttribute(value=ratio >= decision, confidence=round(confidence, 2))


def eyes_open(points: Points) -> BooleanAttribute:
    return _boolean(eye_aspect_ratio(points), EYES_OPEN_EAR, EAR_SPREAD)


def mouth_open(points: Points) -> BooleanAttribute:
    return _boolean(mouth_aspect_ratio(points), MOUTH_OPEN_MAR, MAR_SPREAD)

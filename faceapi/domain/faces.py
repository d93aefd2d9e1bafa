"""Face analysis results as plain dataclasses.

Field meanings follow AWS Rekognition's face API so a user who knows Rekognition knows
these: bounding boxes are ratios of the image width/height, confidences and
similarities are 0-100. The API layer dumps them under Rekognition's field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Attributes(StrEnum):
    """Which attributes DetectFaces returns (Rekognition's `Attributes`)."""

    DEFAULT = "DEFAULT"
    ALL = "ALL"


class OrientationCorrection(StrEnum):
    ROTATE_0 = "ROTATE_0"
    ROTATE_90 = "ROTATE_90"
    ROTATE_180 = "ROTATE_180"
    ROTATE_270 = "ROTATE_270"


@dataclass(frozen=True)
class BoundingBox:
    width: float
    height: float
    left: float
    top: float


@dataclass(frozen=True)
class Landmark:
    type: str
    x: float
    y: float


@dataclass(frozen=True)
class Pose:
    roll: float
    yaw: float
    pitch: float


@dataclass(frozen=True)
class Quality:
    brightness: float
    sharpness: float


@dataclass(frozen=True)
class BooleanAttribute:
    value: bool
    confidence: float


@dataclass(frozen=True)
class FaceDetail:
    """One detected face. Optional attributes are None when not requested or when the
    engine cannot compute them; they are never filled with guesses."""

    bounding_box: BoundingBox
    confidence: float
    landmarks: tuple[Landmark, ...] = ()
    pose: Pose | None = None
    quality: Quality | None = None
    eyes_open: BooleanAttribute | None = None
    mouth_open: BooleanAttribute | None = None
    # Pixel size of the face box in the (orientation-corrected) image; used by quality
    # gates (minimum face size) and not part of Rekognition's shape.
    width_px: int = 0
    height_px: int = 0


@dataclass(frozen=True)
class Detection:
    """DetectFaces result."""

    faces: tuple[FaceDetail, ...]
    orientation_correction: OrientationCorrection | None = None


@dataclass(frozen=True)
class ComparedFace:
    """A face as CompareFaces reports it (box, confidence, landmarks, pose, quality)."""

    detail: FaceDetail


@dataclass(frozen=True)
class CompareFaceMatch:
    similarity: float
    face: FaceDetail


@dataclass(frozen=True)
class Comparison:
    """CompareFaces result: the largest source face against every target face."""

    source_face: FaceDetail
    face_matches: tuple[CompareFaceMatch, ...]
    unmatched_faces: tuple[FaceDetail, ...]
    source_orientation_correction: OrientationCorrection | None = None
    target_orientation_correction: OrientationCorrection | None = None


@dataclass(frozen=True)
class EmbeddedFace:
    """A detected face with its descriptor, for engines that expose descriptors
    (the local engine). The descriptor never leaves the service layer except into the
    store's faces table; it is never logged or audited."""

    detail: FaceDetail
    embedding: tuple[float, ...] = field(repr=False)
    # The aligned face chip the descriptor was computed from (engine-specific bytes,
    # e.g. 150x150 RGB for the local engine), kept sealed so a collection can be
    # re-embedded under a new template version; None if the engine has no chips.
    chip: bytes | None = field(default=None, repr=False)


# Rekognition's FaceDetail members that our FaceDetail carries, and those it does not
# (so no engine ever returns them, whatever it computes): Capabilities lists both.
DETAIL_ATTRIBUTES = ("BoundingBox", "Confidence", "Landmarks", "Pose", "Quality",
                     "EyesOpen", "MouthOpen")
UNCARRIED_ATTRIBUTES = ("AgeRange", "Gender", "Emotions", "Smile", "Eyeglasses",
                        "Sunglasses", "Beard", "Mustache", "FaceOccluded", "EyeDirection")


@dataclass(frozen=True)
class Capabilities:
    """What an engine computes; `unsupported` lists attributes it cannot compute and
    therefore never returns."""

    engine: str
    model_version: str
    detector: str
    attributes: tuple[str, ...]
    unsupported: tuple[str, ...]
    similarity: str
    max_image_bytes: int | None = None
    notes: tuple[str, ...] = ()

"""Collections, subjects, stored faces and consents as plain values, the repository
ports the services use to keep them, and the IndexFaces quality filter.

A collection is like a Rekognition collection: a named set of faces indexed by one
engine and model version. A subject groups the faces of one person (Rekognition's
ExternalImageId / UserId); erasing the subject erases all of them. Every change to a
collection's faces bumps its `version`, which is how every worker's in-process search
index knows it is stale.

Nothing here touches SQL, Flask or numpy.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from faceapi.domain.access import Forbidden
from faceapi.domain.errors import FaceApiError
from faceapi.domain.faces import BoundingBox, FaceDetail, Pose, Quality

# Ids travel in URLs, audit events and CSV reports: keep them to a safe alphabet.
# Same alphabet as Rekognition's CollectionId / ExternalImageId (minus ':').
# \Z, not $: "$" also matches before a final newline, and ids are matched, not
# fullmatched (marshmallow's Regexp too): "c1\n" was a valid collection id.
ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}\Z")


def valid_id(value: str) -> bool:
    return bool(ID_RE.match(value))


class CollectionExists(FaceApiError):
    code = "collection_exists"


class ConsentRequired(FaceApiError):
    code = "consent_required"


class EngineMismatch(FaceApiError):
    """The collection was indexed by another engine or model version; mixing
    descriptors of different models would make every similarity meaningless."""

    code = "engine_mismatch"


class MultipleFaces(StrEnum):
    """A collection's rule for enrolling a photo that shows more than one face."""

    REFUSE = "refuse"  # 422 `multiple_faces`, naming the count; nothing is enrolled
    LARGEST = "largest"  # the largest face is enrolled, with a warning


class MultipleFacesInPhoto(FaceApiError):
    """Enrollment of a photo showing several faces into a collection whose rule is
    `refuse`: which face is the subject's cannot be told."""

    code = "multiple_faces"


def multiple_faces_warning(face_count: int) -> str:
    """The warning an enrollment under the `largest` rule (or an explicit max_faces that
    left faces out) carries."""
    return f"multiple_faces: the photo shows {face_count} faces; only the largest was enrolled"


@dataclass(frozen=True)
class Collection:
    collection_id: str
    description: str
    engine: str
    model_version: str
    created_at: datetime
    # Bumped on every change to the collection's faces; search indexes compare it.
    version: int = 0
    consent_required: bool = True
    # Keep a small JPEG crop of each indexed face for reviewers (services/face_crops.py).
    keep_face_crops: bool = True
    # Keep each face's aligned chip (sealed at rest) so `faceapi collections reindex`
    # can move the collection to a new template version without the original photos.
    keep_chips: bool = True
    # The verify and search policies that may be used on this collection (sorted names).
    # Empty: none may, so every verify and search is refused (fail closed).
    policies: tuple[str, ...] = ()
    # What enrolling a photo with several faces does (REST and `faceapi import`;
    # docs/collections.md, "Group photos"): refuse it, or take the largest face and say so.
    multiple_faces: MultipleFaces = MultipleFaces.REFUSE


class PolicyNotBound(Forbidden):
    """A verify or search under a policy the collection is not bound to. A Forbidden, so
    the API layer audits it as `authz.deny` (its details name the policy and collection)
    whatever the path: REST or the Rekognition-compatible endpoint."""

    code = "policy_not_bound"


def require_bound(collection: Collection, policy_name: str) -> None:
    """Refuse (403 `policy_not_bound`) a policy the collection does not bind."""
    if policy_name not in collection.policies:
        raise PolicyNotBound(
            f"policy {policy_name!r} is not bound to collection {collection.collection_id!r}",
            details={"policy": policy_name, "collection_id": collection.collection_id,
                     "refusal": "policy_not_bound", "bound": list(collection.policies)})


@dataclass(frozen=True)
class CollectionStats:
    face_count: int
    subject_count: int
    # Faces per template version (filled by describe_collection only).
    template_versions: Mapping[str, int] = field(default_factory=dict)


class ConsentBasis(StrEnum):
    """The lawful basis recorded for processing a subject's biometric data
    (GDPR Art 9(2): explicit consent, or another Art 9 condition named here)."""

    EXPLICIT_CONSENT = "explicit_consent"
    EMPLOYMENT = "employment"
    VITAL_INTERESTS = "vital_interests"
    LEGAL_CLAIMS = "legal_claims"
    SUBSTANTIAL_PUBLIC_INTEREST = "substantial_public_interest"


@dataclass(frozen=True)
class Consent:
    """A consent (or other basis) as recorded for one subject. `reference` points at
    the evidence kept elsewhere (a signed form's id, a ticket), never a copy of it."""

    collection_id: str
    subject_id: str
    basis: ConsentBasis
    reference: str
    recorded_at: datetime
    recorded_by: str | None = None  # the API key id that recorded it
    # When the consent lapses (None: until withdrawn or erased). From that moment the
    # subject's faces are used by no enrollment, verify or search, and the next
    # `faceapi retention run` erases the subject (docs/operations.md, Retention).
    expires_at: datetime | None = None

    def lapsed(self, now: datetime) -> bool:
        """Whether this consent has expired at `now`."""
        return self.expires_at is not None and self.expires_at <= now


def consent_lapsed(consent: Consent | None, now: datetime) -> bool:
    """Whether the consent in force (the newest record) has lapsed: none on record is
    not lapsed (a collection that needs none may enroll such subjects)."""
    return consent is not None and consent.lapsed(now)


def consent_expired_error(collection_id: str, subject_id: str) -> ConsentRequired:
    """The refusal of a use of a subject whose consent has lapsed (422, like a missing
    consent): enrollment needs a new consent first."""
    return ConsentRequired(
        f"the consent recorded for subject {subject_id!r} in collection {collection_id!r} "
        "has expired: record a new consent (with the request or at .../consent) first",
        details={"collection_id": collection_id, "refusal": "consent_expired"})


@dataclass(frozen=True)
class Subject:
    collection_id: str
    subject_id: str
    created_at: datetime


@dataclass(frozen=True)
class StoredFace:
    """One indexed face. `embedding` is the engine's descriptor as little-endian
    float32 bytes (engines that keep faces remotely, like Rekognition, store None and
    set `engine_face_id`). The embedding is never logged, audited or returned."""

    face_id: str
    collection_id: str
    subject_id: str
    image_id: str
    image_sha256: str
    bounding_box: BoundingBox
    confidence: float
    created_at: datetime
    quality: Quality | None = None
    pose: Pose | None = None
    width_px: int = 0
    height_px: int = 0
    embedding: bytes | None = field(default=None, repr=False)
    engine_face_id: str | None = None
    # The collection version the face was added at: search indexes fetch only the
    # faces added since their copy's version instead of the whole collection.
    added_version: int = 0
    # What the descriptor was computed with (FaceEngine.template_version): faces are
    # only ever compared with probes of the same template version.
    template_version: str = ""

    def vector(self) -> tuple[float, ...]:
        """The descriptor as floats; empty when this engine keeps no descriptors."""
        return embedding_from_bytes(self.embedding) if self.embedding else ()


def embedding_to_bytes(values: Sequence[float]) -> bytes:
    """Descriptor -> little-endian float32 bytes (the stored form)."""
    packed = array("f", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def embedding_from_bytes(data: bytes) -> tuple[float, ...]:
    """Little-endian float32 bytes -> descriptor."""
    packed = array("f")
    packed.frombytes(data)
    if sys.byteorder != "little":
        packed.byteswap()
    return tuple(packed)


@dataclass(frozen=True)
class FaceChip:
    """The aligned face chip a stored descriptor was computed from: the exact input of
    the descriptor network, biometric data like the descriptor itself. Sealed at rest
    by the store; never logged, audited or returned."""

    collection_id: str
    subject_id: str
    face_id: str
    chip_format: str  # the engine's ChipEmbedder.chip_format when it was cut
    pixels: bytes = field(repr=False)


@dataclass(frozen=True)
class FacePage:
    faces: list[StoredFace]
    next_token: str | None


# --- IndexFaces quality filter --------------------------------------------------------

class QualityFilter(StrEnum):
    """Rekognition's QualityFilter for IndexFaces. AUTO is MEDIUM."""

    NONE = "NONE"
    AUTO = "AUTO"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class UnindexedReason(StrEnum):
    """Rekognition's Reasons for a face IndexFaces did not index."""

    EXCEEDS_MAX_FACES = "EXCEEDS_MAX_FACES"
    EXTREME_POSE = "EXTREME_POSE"
    LOW_BRIGHTNESS = "LOW_BRIGHTNESS"
    LOW_SHARPNESS = "LOW_SHARPNESS"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    SMALL_BOUNDING_BOX = "SMALL_BOUNDING_BOX"
    LOW_FACE_QUALITY = "LOW_FACE_QUALITY"


@dataclass(frozen=True)
class QualityBar:
    """Minimums a face must meet to be indexed (docs/collections.md has the table).

    Confidence is the engine's 0-100 belief that the box is a face: for the local engine
    a logistic fit on the shared data set where real faces scored 23-100 and the only
    false detection that survives dlib's cut-off scored 31, so LOW (30) drops little
    more than that, AUTO/MEDIUM (50) asks for an even-odds face and HIGH (90) for a
    clear one. Sharpness 0-100 reads about 63 on the data set's median face
    (engines/local/attributes.py); its soft but usable 130-150 px crops read 11-15, so
    AUTO asks for 10, LOW keeps all but heavily blurred faces and HIGH roughly the
    sharper two thirds. Box size is the smaller side in pixels of the
    original image: the descriptor model works on 150 px crops, and below ~40 px a
    face carries too little detail to be told from similar ones."""

    min_confidence: float
    min_face_px: int
    max_yaw: float
    max_pitch: float
    max_roll: float
    min_sharpness: float
    min_brightness: float


QUALITY_BARS: dict[QualityFilter, QualityBar] = {
    QualityFilter.LOW: QualityBar(min_confidence=30.0, min_face_px=24, max_yaw=75.0,
                                  max_pitch=60.0, max_roll=90.0, min_sharpness=5.0,
                                  min_brightness=5.0),
    QualityFilter.MEDIUM: QualityBar(min_confidence=50.0, min_face_px=40, max_yaw=50.0,
                                     max_pitch=40.0, max_roll=60.0, min_sharpness=10.0,
                                     min_brightness=12.0),
    QualityFilter.HIGH: QualityBar(min_confidence=90.0, min_face_px=80, max_yaw=30.0,
                                   max_pitch=25.0, max_roll=40.0, min_sharpness=40.0,
                                   min_brightness=20.0),
}
QUALITY_BARS[QualityFilter.AUTO] = QUALITY_BARS[QualityFilter.MEDIUM]


def quality_reasons(detail: FaceDetail, level: QualityFilter) -> list[UnindexedReason]:
    """Why `detail` fails `level` (empty: it passes). Attributes the engine did not
    compute (pose or quality None) are not held against the face."""
    bar = QUALITY_BARS.get(level)
    if bar is None:
        return []
    reasons: list[UnindexedReason] = []
    if detail.confidence < bar.min_confidence:
        reasons.append(UnindexedReason.LOW_CONFIDENCE)
    size = min(detail.width_px, detail.height_px)
    if size and size < bar.min_face_px:
        reasons.append(UnindexedReason.SMALL_BOUNDING_BOX)
    pose = detail.pose
    if pose is not None and (abs(pose.yaw) > bar.max_yaw or abs(pose.pitch) > bar.max_pitch
                             or abs(pose.roll) > bar.max_roll):
        reasons.append(UnindexedReason.EXTREME_POSE)
    quality = detail.quality
    if quality is not None:
        if quality.sharpness < bar.min_sharpness:
            reasons.append(UnindexedReason.LOW_SHARPNESS)
        if quality.brightness < bar.min_brightness:
            reasons.append(UnindexedReason.LOW_BRIGHTNESS)
    return reasons


# --- Repository ports ----------------------------------------------------------------
# The store implements these (faceapi/adapters/store/collections_repo.py); the unit of work
# exposes them as `uow.collections`, `uow.subjects`, `uow.faces`, `uow.consents`.








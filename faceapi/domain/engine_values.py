"""The values the face engine ports exchange: images in S3 and the results of the
collection operations, shaped like Rekognition's. The ports themselves (`FaceEngine`,
`FaceCollections`, `S3ImageReader`) are in faceapi/services/ports.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from faceapi.domain.collections import UnindexedReason
from faceapi.domain.faces import (
    BoundingBox,
    FaceDetail,
    OrientationCorrection,
)
from faceapi.domain.images import DecodedImage


@dataclass(frozen=True)
class S3Object:
    """An image in Amazon S3 that the engine reads itself (Rekognition's `S3Object`)."""

    bucket: str
    name: str
    version: str | None = None

    def uri(self) -> str:
        suffix = f"?versionId={self.version}" if self.version else ""
        return f"s3://{self.bucket}/{self.name}{suffix}"


def image_digest(source: bytes | S3Object) -> str:
    """SHA-256 of the image bytes, or of the S3 object's URI (audit events carry it)."""
    return hashlib.sha256(source.uri().encode() if isinstance(source, S3Object)
                          else source).hexdigest()


@dataclass(frozen=True, eq=False)
class S3Image(DecodedImage):
    """An image the engine reads from S3: no bytes or pixels here (width and height are
    0), `sha256` is the digest of the object's URI for audit events."""

    s3_object: S3Object | None = None


# --- Collections ----------------------------------------------------------------------
# The collection half of the port, shaped like Rekognition's collection operations.
# RekognitionEngine implements it with boto3 (faces live in AWS); for the local engine
# faceapi/entrypoints/web/emulator/collections.py implements it over our store, search index and the
# collection services, with an actor, so access checks and audit events still apply.


@dataclass(frozen=True)
class CollectionInfo:
    """DescribeCollection / CreateCollection."""

    collection_id: str
    face_model_version: str
    face_count: int = 0
    subject_count: int | None = None
    created_at: datetime | None = None
    arn: str | None = None


@dataclass(frozen=True)
class IndexedFace:
    """A face kept in a collection (Rekognition's `Face`). `external_image_id` is the
    subject id."""

    face_id: str
    bounding_box: BoundingBox
    confidence: float
    image_id: str
    external_image_id: str | None


@dataclass(frozen=True)
class IndexedFaceRecord:
    face: IndexedFace
    detail: FaceDetail


@dataclass(frozen=True)
class NotIndexedFace:
    reasons: tuple[UnindexedReason, ...]
    detail: FaceDetail


@dataclass(frozen=True)
class IndexResult:
    """IndexFaces."""

    records: tuple[IndexedFaceRecord, ...]
    unindexed: tuple[NotIndexedFace, ...]
    face_model_version: str
    orientation_correction: OrientationCorrection | None = None


@dataclass(frozen=True)
class CollectionMatch:
    similarity: float
    face: IndexedFace


@dataclass(frozen=True)
class CollectionSearch:
    """SearchFacesByImage / SearchFaces. `searched_face` is the probe's face (by image),
    `searched_face_id` the probe face (by id)."""

    matches: tuple[CollectionMatch, ...]
    face_model_version: str
    searched_face: FaceDetail | None = None
    searched_face_id: str | None = None


@dataclass(frozen=True)
class IndexedFacePage:
    faces: tuple[IndexedFace, ...]
    next_token: str | None
    face_model_version: str = ""


@dataclass(frozen=True)
class CollectionIdPage:
    collection_ids: tuple[str, ...]
    face_model_versions: tuple[str, ...]
    next_token: str | None


@dataclass(frozen=True)
class FaceDeletion:
    deleted: tuple[str, ...]
    not_deleted: tuple[str, ...]





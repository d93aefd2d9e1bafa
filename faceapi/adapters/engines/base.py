"""The engine port: what every face engine adapter offers.

Operations mirror Rekognition's face API: `FaceEngine` for analysis, `FaceCollections`
for collections (create, index, search, list, delete).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from faceapi.domain.collections import QualityFilter, UnindexedReason
from faceapi.domain.faces import (
    Attributes,
    BoundingBox,
    Capabilities,
    Comparison,
    Detection,
    EmbeddedFace,
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


@dataclass(frozen=True, eq=False)
class S3Image(DecodedImage):
    """An image the engine reads from S3: no bytes or pixels here (width and height are
    0), `sha256` is the digest of the object's URI for audit events."""

    s3_object: S3Object | None = None


@runtime_checkable
class S3ImageReader(Protocol):
    """Engines that can take images straight from S3 (the Rekognition engine)."""

    def image_from_s3(self, ref: S3Object) -> DecodedImage:
        """An image handle the engine's operations accept in place of decoded bytes."""
        ...


class FaceEngine(Protocol):
    """Face analysis: detection with attributes, 1:1 comparison, descriptors."""

    @property
    def name(self) -> str:
        """Short engine name, e.g. `local` or `rekognition`."""
        ...

    @property
    def model_version(self) -> str:
        """Version of the models in use; recorded on collections and audit events."""
        ...

    def capabilities(self) -> Capabilities:
        """What this engine computes and what it does not."""
        ...

    def detect_faces(self, image: DecodedImage, attributes: Attributes) -> Detection:
        """Find every face; ALL adds landmarks, pose, quality, eyes/mouth open."""
        ...

    def compare_faces(self, source: DecodedImage, target: DecodedImage,
                      similarity_threshold: float) -> Comparison:
        """Compare the largest face of `source` with every face of `target`.

        Raises NoFaceInSource when the source has no face."""
        ...

    def embed_faces(self, image: DecodedImage) -> tuple[Detection, list[EmbeddedFace]]:
        """Detect faces with ALL attributes and compute each one's descriptor."""
        ...

    def similarity(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        """Calibrated similarity 0-100 between two descriptors of this engine."""
        ...

    def ready(self) -> tuple[bool, str]:
        """Whether the engine can serve requests now, and why not."""
        ...


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


@runtime_checkable
class FaceCollections(Protocol):
    """Collections of indexed faces, searched 1:N (Rekognition's collection API)."""

    def create_collection(self, collection_id: str) -> CollectionInfo:
        """Create an empty collection; Conflict/CollectionExists if the id is taken."""
        ...

    def delete_collection(self, collection_id: str) -> None:
        """Delete a collection and every face in it; NotFound if there is none."""
        ...

    def describe_collection(self, collection_id: str) -> CollectionInfo:
        """Face count and model version of one collection; NotFound if unknown."""
        ...

    def list_collections(self, max_results: int = 100,
                         next_token: str | None = None) -> CollectionIdPage:
        """Collection ids, a page at a time."""
        ...

    def index_faces(self, collection_id: str, image: DecodedImage, external_image_id: str,
                    max_faces: int | None = None,
                    quality_filter: QualityFilter = QualityFilter.AUTO) -> IndexResult:
        """Detect and keep the faces of an image under `external_image_id` (subject)."""
        ...

    def search_faces_by_image(self, collection_id: str, image: DecodedImage,
                              threshold: float, max_faces: int) -> CollectionSearch:
        """Search the collection for the largest face of `image`, best match first."""
        ...

    def search_faces(self, collection_id: str, face_id: str, threshold: float,
                     max_faces: int) -> CollectionSearch:
        """Search the collection for a face already in it (the face itself excluded)."""
        ...

    def list_faces(self, collection_id: str, max_results: int = 100,
                   next_token: str | None = None) -> IndexedFacePage:
        """Faces of a collection, a page at a time."""
        ...

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> FaceDeletion:
        """Delete faces by id; ids that were not there are reported, not raised."""
        ...


def remote_collections(engine: FaceEngine) -> FaceCollections | None:
    """The engine itself when it keeps collections' faces remotely (Rekognition): the
    collection services then index, search and delete through this port and keep only
    ids, boxes and subjects in our store. None when descriptors live in our store."""
    return engine if isinstance(engine, FaceCollections) else None

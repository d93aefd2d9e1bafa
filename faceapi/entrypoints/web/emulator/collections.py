"""The collection port (`FaceCollections`) over our own store, search index and
collection services, for one caller.

This is what answers the emulator's collection operations, so an SDK user gets the
same access checks, consent rules and audit events as a caller of /v1/collections.
Two choices differ from Rekognition and are documented in docs/engines.md:
- `ExternalImageId` is required: it names the subject the faces belong to;
- `SearchFacesByImage` and `SearchFaces` decide under the collection's bound search
  policy (the strictest one when several are bound; refused when none is), so its
  minimum similarity, match limit, lockout filter, audit and human review apply: a
  decision waiting for review returns no matches, and its id travels in the
  `X-Faceapi-Decision-Id` response header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from faceapi.bootstrap import UseCases
from faceapi.domain.audit import Actor
from faceapi.domain.collections import QualityFilter, StoredFace
from faceapi.domain.decisions import Decision
from faceapi.domain.engine_values import (
    CollectionIdPage,
    CollectionInfo,
    CollectionMatch,
    CollectionSearch,
    FaceDeletion,
    IndexedFace,
    IndexedFacePage,
    IndexedFaceRecord,
    IndexResult,
    NotIndexedFace,
)
from faceapi.domain.errors import InvalidParameter, NoFaceInSource
from faceapi.domain.faces import Attributes
from faceapi.domain.images import DecodedImage
from faceapi.services import collections as svc
from faceapi.services import enroll
from faceapi.services import search as search_svc


def indexed_face(face: StoredFace) -> IndexedFace:
    return IndexedFace(face_id=face.face_id, bounding_box=face.bounding_box,
                       confidence=face.confidence, image_id=face.image_id,
                       external_image_id=face.subject_id)


@dataclass
class StoreCollections:
    """FaceCollections on the local engine, acting for `actor`, through the use cases
    the composition root bound (faceapi/bootstrap.py)."""

    use_cases: UseCases
    actor: Actor
    request_id: str | None = None
    # Collections created through this port need no recorded consent when False; the
    # emulator sets it from CreateCollection's `faceapi:consent_required` tag.
    consent_required: bool = True
    # The policies a collection created through this port binds (None: the configured
    # default); the emulator sets it from CreateCollection's `faceapi:policies` tag.
    bind_policies: tuple[str, ...] | None = None
    # The decision of the last search through this port (the emulator names its id in
    # a response header, so an SDK caller can read it once reviewers have decided).
    last_decision: Decision | None = None

    def create_collection(self, collection_id: str) -> CollectionInfo:
        created = self.use_cases.create_collection(
            svc.CreateCollectionRequest(collection_id=collection_id,
                                        consent_required=self.consent_required,
                                        policies=self.bind_policies),
            actor=self.actor)
        return CollectionInfo(collection_id=created.collection_id,
                              face_model_version=created.model_version,
                              created_at=created.created_at)

    def delete_collection(self, collection_id: str) -> None:
        self.use_cases.delete_collection(collection_id, actor=self.actor)

    def describe_collection(self, collection_id: str) -> CollectionInfo:
        found = self.use_cases.describe_collection(collection_id, actor=self.actor)
        return CollectionInfo(collection_id=collection_id,
                              face_model_version=found.collection.model_version,
                              face_count=found.stats.face_count,
                              subject_count=found.stats.subject_count,
                              created_at=found.collection.created_at)

    def list_collections(self, max_results: int = 100,
                         next_token: str | None = None) -> CollectionIdPage:
        page = self.use_cases.list_collections(actor=self.actor, limit=max_results,
                                               next_token=next_token)
        return CollectionIdPage(
            collection_ids=tuple(c.collection_id for c in page.collections),
            face_model_versions=tuple(c.model_version for c in page.collections),
            next_token=page.next_token)

    def index_faces(self, collection_id: str, image: DecodedImage, external_image_id: str,
                    max_faces: int | None = None,
                    quality_filter: QualityFilter = QualityFilter.AUTO) -> IndexResult:
        # Every attribute, as RekognitionEngine.index_faces asks Rekognition for ALL.
        return self.index_image_bytes(collection_id, image.data, external_image_id,
                                      max_faces, quality_filter,
                                      attributes=Attributes.ALL)

    def index_image_bytes(self, collection_id: str, data: bytes, external_image_id: str,
                          max_faces: int | None = None,
                          quality_filter: QualityFilter = QualityFilter.AUTO, *,
                          attributes: Attributes = Attributes.DEFAULT) -> IndexResult:
        """IndexFaces on undecoded bytes: the enroll service runs the intake itself, once,
        after its access and consent checks, and shows each face's `attributes` (the
        emulator calls this one)."""
        result = self.use_cases.index_faces(
            enroll.IndexFacesRequest(collection_id=collection_id, image=data,
                                     subject_id=external_image_id, max_faces=max_faces,
                                     quality_filter=quality_filter, attributes=attributes),
            actor=self.actor)
        return IndexResult(
            records=tuple(IndexedFaceRecord(face=indexed_face(r.face), detail=r.detail)
                          for r in result.face_records),
            unindexed=tuple(NotIndexedFace(reasons=u.reasons, detail=u.detail)
                            for u in result.unindexed_faces),
            face_model_version=result.face_model_version,
            orientation_correction=result.orientation_correction)

    def search_faces_by_image(self, collection_id: str, image: DecodedImage,
                              threshold: float, max_faces: int) -> CollectionSearch:
        return self.search_image_bytes(collection_id, image.data, threshold, max_faces)

    def search_image_bytes(self, collection_id: str, data: bytes, threshold: float,
                           max_faces: int) -> CollectionSearch:
        """SearchFacesByImage on undecoded bytes: the search service runs the intake
        itself, once, after its policy and access checks (the emulator calls this one)."""
        # No policy named: the service decides under the collection's bound search policy.
        result = self.use_cases.search(
            search_svc.SearchRequest(collection_id=collection_id, image=data,
                                     policy=None, threshold=threshold,
                                     max_faces=max_faces),
            actor=self.actor, request_id=self.request_id)
        self.last_decision = result.decision
        if result.searched_face is None:
            # Rekognition answers a search image without a face with InvalidParameter.
            raise NoFaceInSource("no usable face was found in the search image",
                                 details={"reasons": list(result.decision.reasons)})
        return CollectionSearch(
            matches=tuple(CollectionMatch(similarity=m.similarity, face=indexed_face(m.face))
                          for m in result.face_matches),
            face_model_version=result.model_version, searched_face=result.searched_face)

    def search_faces(self, collection_id: str, face_id: str, threshold: float,
                     max_faces: int) -> CollectionSearch:
        if not 0.0 <= threshold <= 100.0:
            raise InvalidParameter("FaceMatchThreshold must be between 0 and 100")
        result = self.use_cases.search_by_face(
            search_svc.SearchByFaceRequest(collection_id=collection_id, face_id=face_id,
                                           threshold=threshold, max_faces=max_faces),
            actor=self.actor, request_id=self.request_id)
        self.last_decision = result.decision
        return CollectionSearch(
            matches=tuple(CollectionMatch(similarity=m.similarity, face=indexed_face(m.face))
                          for m in result.face_matches),
            face_model_version=result.model_version, searched_face_id=face_id)

    def list_faces(self, collection_id: str, max_results: int = 100,
                   next_token: str | None = None) -> IndexedFacePage:
        page = self.use_cases.list_faces(collection_id, actor=self.actor, limit=max_results,
                                         next_token=next_token)
        return IndexedFacePage(faces=tuple(indexed_face(f) for f in page.faces),
                               next_token=page.next_token,
                               face_model_version=page.collection.model_version)

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> FaceDeletion:
        # svc.delete_faces checks collection access (load_collection).
        result = self.use_cases.delete_faces(collection_id, list(face_ids), actor=self.actor)
        return FaceDeletion(deleted=tuple(result.deleted), not_deleted=tuple(result.not_found))

"""The collection port (`FaceCollections`) over our own store, search index and
collection services, for one caller.

This is what answers the emulator's collection operations, so an SDK user gets the
same access checks, consent rules and audit events as a caller of /v1/collections.
Two choices differ from Rekognition and are documented in docs/engines.md:
- `ExternalImageId` is required: it names the subject the faces belong to;
- `SearchFacesByImage` runs under a search policy (`photo_tagging` unless the key is
  scoped to exactly one other search policy), so its minimum similarity, match limit,
  audit and human review apply; a decision waiting for review returns no matches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from faceapi.blobs import BlobStore
from faceapi.config import Settings
from faceapi.domain.access import Forbidden
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.collections import QualityFilter, StoredFace
from faceapi.domain.errors import InvalidParameter, NoFaceInSource, NotFound
from faceapi.domain.faces import Attributes
from faceapi.domain.images import DecodedImage
from faceapi.domain.policies import Operation, PolicySet
from faceapi.engines.base import (
    CollectionIdPage,
    CollectionInfo,
    CollectionMatch,
    CollectionSearch,
    FaceDeletion,
    FaceEngine,
    IndexedFace,
    IndexedFacePage,
    IndexedFaceRecord,
    IndexResult,
    NotIndexedFace,
)
from faceapi.search.index import SearchIndex
from faceapi.services import collections as svc
from faceapi.services import enroll
from faceapi.services import search as search_svc
from faceapi.services.erase import SubjectEraser
from faceapi.services.ports import UnitOfWork

DEFAULT_SEARCH_POLICY = "photo_tagging"


def indexed_face(face: StoredFace) -> IndexedFace:
    return IndexedFace(face_id=face.face_id, bounding_box=face.bounding_box,
                       confidence=face.confidence, image_id=face.image_id,
                       external_image_id=face.subject_id)


@dataclass
class StoreCollections:
    """FaceCollections on the local engine, acting for `actor`."""

    engine: FaceEngine
    uow: Callable[[], UnitOfWork]
    index: SearchIndex
    policies: PolicySet
    blobs: BlobStore
    clock: Clock
    settings: Settings
    actor: Actor
    erasers: tuple[SubjectEraser, ...] = ()
    request_id: str | None = None
    # Collections created through this port need no recorded consent when False; the
    # emulator sets it from CreateCollection's `faceapi:consent_required` tag.
    consent_required: bool = True

    def create_collection(self, collection_id: str) -> CollectionInfo:
        created = svc.create_collection(
            svc.CreateCollectionRequest(collection_id=collection_id,
                                        consent_required=self.consent_required),
            actor=self.actor, engine=self.engine, uow=self.uow(), clock=self.clock)
        return CollectionInfo(collection_id=created.collection_id,
                              face_model_version=created.model_version,
                              created_at=created.created_at)

    def delete_collection(self, collection_id: str) -> None:
        svc.delete_collection(collection_id, actor=self.actor, uow=self.uow(),
                              erasers=self.erasers, on_erased=self.index.invalidate)

    def describe_collection(self, collection_id: str) -> CollectionInfo:
        found = svc.describe_collection(collection_id, actor=self.actor, uow=self.uow())
        return CollectionInfo(collection_id=collection_id,
                              face_model_version=found.collection.model_version,
                              face_count=found.stats.face_count,
                              subject_count=found.stats.subject_count,
                              created_at=found.collection.created_at)

    def list_collections(self, max_results: int = 100,
                         next_token: str | None = None) -> CollectionIdPage:
        page = svc.list_collections(actor=self.actor, uow=self.uow(), limit=max_results,
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
        result = enroll.index_faces(
            enroll.IndexFacesRequest(collection_id=collection_id, image=data,
                                     subject_id=external_image_id, max_faces=max_faces,
                                     quality_filter=quality_filter, attributes=attributes),
            actor=self.actor, engine=self.engine, uow=self.uow(), clock=self.clock,
            settings=self.settings, blobs=self.blobs)
        return IndexResult(
            records=tuple(IndexedFaceRecord(face=indexed_face(r.face), detail=r.detail)
                          for r in result.face_records),
            unindexed=tuple(NotIndexedFace(reasons=u.reasons, detail=u.detail)
                            for u in result.unindexed_faces),
            face_model_version=result.face_model_version,
            orientation_correction=result.orientation_correction)

    def search_policy(self) -> str:
        """The policy a search runs under: see the module docstring."""
        allowed = [name for name, policy in self.policies.items()
                   if policy.operation is Operation.SEARCH]
        scope = getattr(self.actor, "policies", None)
        if scope is not None:
            allowed = [name for name in allowed if name in scope]
        if DEFAULT_SEARCH_POLICY in allowed:
            return DEFAULT_SEARCH_POLICY
        if len(allowed) == 1:
            return allowed[0]
        raise Forbidden("SearchFacesByImage runs under a search policy: this key's scope "
                        f"must include {DEFAULT_SEARCH_POLICY!r} or exactly one search policy")

    def search_faces_by_image(self, collection_id: str, image: DecodedImage,
                              threshold: float, max_faces: int) -> CollectionSearch:
        return self.search_image_bytes(collection_id, image.data, threshold, max_faces)

    def search_image_bytes(self, collection_id: str, data: bytes, threshold: float,
                           max_faces: int) -> CollectionSearch:
        """SearchFacesByImage on undecoded bytes: the search service runs the intake
        itself, once, after its policy and access checks (the emulator calls this one)."""
        result = search_svc.search(
            search_svc.SearchRequest(collection_id=collection_id, image=data,
                                     policy=self.search_policy(), threshold=threshold,
                                     max_faces=max_faces),
            actor=self.actor, engine=self.engine, uow=self.uow(), index=self.index,
            policies=self.policies, clock=self.clock, blobs=self.blobs,
            settings=self.settings, request_id=self.request_id)
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
        with self.uow() as uow:
            collection = svc.load_collection(uow, self.actor, collection_id)
            probe = uow.faces.get(collection_id, face_id)
        if probe is None or not probe.embedding:
            raise NotFound(f"face {face_id!r} not found in collection {collection_id!r}",
                           details={"collection_id": collection_id})
        # One more than asked: the probe finds itself first and is left out, as in
        # Rekognition.
        hits = [h for h in self.index.search(collection_id, probe.vector(),
                                             threshold=threshold, max_faces=max_faces + 1)
                if h.face_id != face_id][:max_faces]
        matches: list[CollectionMatch] = []
        with self.uow() as uow:
            for hit in hits:
                stored = uow.faces.get(collection_id, hit.face_id)
                if stored is not None:
                    matches.append(CollectionMatch(hit.similarity, indexed_face(stored)))
            uow.audit.append(AuditEvent(
                action=Action.FACE_SEARCH, outcome="searched", actor=self.actor,
                resource=svc.resource(collection_id), engine=collection.engine,
                model_version=collection.model_version, request_id=self.request_id,
                scores={"threshold": threshold, "match_count": len(matches),
                        "best_similarity": round(matches[0].similarity, 4) if matches
                        else None},
                details={"searched_face_id": face_id}))
            uow.commit()
        return CollectionSearch(matches=tuple(matches),
                                face_model_version=collection.model_version,
                                searched_face_id=face_id)

    def list_faces(self, collection_id: str, max_results: int = 100,
                   next_token: str | None = None) -> IndexedFacePage:
        page = svc.list_faces(collection_id, actor=self.actor, uow=self.uow(),
                              limit=max_results, next_token=next_token)
        return IndexedFacePage(faces=tuple(indexed_face(f) for f in page.faces),
                               next_token=page.next_token,
                               face_model_version=page.collection.model_version)

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> FaceDeletion:
        # svc.delete_faces checks collection access (load_collection).
        result = svc.delete_faces(collection_id, list(face_ids), actor=self.actor,
                                  uow=self.uow(), engine=self.engine, blobs=self.blobs)
        return FaceDeletion(deleted=tuple(result.deleted), not_deleted=tuple(result.not_found))

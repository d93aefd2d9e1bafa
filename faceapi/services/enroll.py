"""Use case: index the faces of an image into a collection (Rekognition's IndexFaces),
under a subject (ExternalImageId), with the subject's consent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from faceapi.config import Settings
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.collections import (
    Collection,
    ConsentRequired,
    EngineMismatch,
    QualityFilter,
    StoredFace,
    Subject,
    UnindexedReason,
    embedding_to_bytes,
    quality_reasons,
)
from faceapi.domain.errors import InvalidParameter
from faceapi.domain.faces import Attributes, EmbeddedFace, FaceDetail, OrientationCorrection
from faceapi.engines.base import FaceEngine
from faceapi.images import decode_image
from faceapi.services.collections import (
    ConsentInput,
    check_consent_reference,
    check_id,
    load_collection,
    record_consent_in,
    resource,
)
from faceapi.services.ports import UnitOfWork

# Rekognition's IndexFaces MaxFaces range.
MAX_FACES_LIMIT = 100


@dataclass(frozen=True)
class IndexFacesRequest:
    collection_id: str
    image: bytes
    subject_id: str  # Rekognition's ExternalImageId
    max_faces: int | None = None
    quality_filter: QualityFilter = QualityFilter.AUTO
    consent: ConsentInput | None = None
    attributes: Attributes = Attributes.DEFAULT


@dataclass(frozen=True)
class FaceRecord:
    face: StoredFace
    detail: FaceDetail


@dataclass(frozen=True)
class UnindexedFace:
    reasons: tuple[UnindexedReason, ...]
    detail: FaceDetail


@dataclass(frozen=True)
class IndexFacesResult:
    face_records: list[FaceRecord]
    unindexed_faces: list[UnindexedFace]
    face_model_version: str
    orientation_correction: OrientationCorrection | None
    image_sha256: str
    audit_event_id: str


def select_faces(faces: list[EmbeddedFace], quality_filter: QualityFilter,
                 max_faces: int | None) -> tuple[list[EmbeddedFace], list[UnindexedFace]]:
    """Split detected faces into those to index and those not, with reasons.

    Like Rekognition: the quality filter goes first, then the largest faces (by box
    area) are kept up to `max_faces`, and the rest are EXCEEDS_MAX_FACES."""
    passing: list[EmbeddedFace] = []
    unindexed: list[UnindexedFace] = []
    for found in faces:
        reasons = quality_reasons(found.detail, quality_filter)
        if not found.embedding:
            reasons.append(UnindexedReason.LOW_FACE_QUALITY)
        if reasons:
            unindexed.append(UnindexedFace(tuple(reasons), found.detail))
        else:
            passing.append(found)
    passing.sort(key=lambda f: -(f.detail.bounding_box.width * f.detail.bounding_box.height))
    if max_faces is not None and len(passing) > max_faces:
        unindexed.extend(UnindexedFace((UnindexedReason.EXCEEDS_MAX_FACES,), f.detail)
                         for f in passing[max_faces:])
        passing = passing[:max_faces]
    return passing, unindexed


def shown(detail: FaceDetail, attributes: Attributes) -> FaceDetail:
    """The detail as IndexFaces returns it: DEFAULT leaves out eyes/mouth open, like
    Rekognition's DetectionAttributes (box, confidence, pose, quality, landmarks)."""
    if attributes is Attributes.ALL:
        return detail
    return replace(detail, eyes_open=None, mouth_open=None)


def _check_engine(collection: Collection, engine: FaceEngine) -> None:
    if (collection.engine, collection.model_version) != (engine.name, engine.model_version):
        raise EngineMismatch(
            f"collection {collection.collection_id!r} holds faces of {collection.engine} "
            f"{collection.model_version}; the engine in use is {engine.name} "
            f"{engine.model_version}",
            details={"collection_id": collection.collection_id})


def _require_consent(uow: UnitOfWork, collection: Collection, subject_id: str,
                     consent: ConsentInput | None) -> None:
    if not collection.consent_required or consent is not None:
        return
    if uow.consents.current(collection.collection_id, subject_id) is None:
        raise ConsentRequired(
            f"collection {collection.collection_id!r} needs a recorded consent for subject "
            f"{subject_id!r}: send consent {{basis, reference}} with the request or record "
            "it first", details={"collection_id": collection.collection_id})


def _is_new_consent(uow: UnitOfWork, collection_id: str, subject_id: str,
                    consent: ConsentInput) -> bool:
    # Clients resend the same consent with every image of a subject: record it once.
    current = uow.consents.current(collection_id, subject_id)
    return current is None or (current.basis, current.reference) != (consent.basis,
                                                                      consent.reference)


def index_faces(req: IndexFacesRequest, *, actor: Actor, engine: FaceEngine, uow: UnitOfWork,
                clock: Clock, settings: Settings) -> IndexFacesResult:
    """Detect, filter and store the faces of one image under a subject, audited."""
    check_id("subject_id", req.subject_id)
    if req.max_faces is not None and not 1 <= req.max_faces <= MAX_FACES_LIMIT:
        raise InvalidParameter(f"max_faces must be between 1 and {MAX_FACES_LIMIT}",
                               details={"field": "max_faces"})
    if req.consent is not None:
        check_consent_reference(req.consent.reference)

    # Cheap checks first, in a short read, so a doomed request costs no engine time.
    with uow:
        collection = load_collection(uow, actor, req.collection_id)
        _check_engine(collection, engine)
        _require_consent(uow, collection, req.subject_id, req.consent)

    image = decode_image(req.image, settings)
    detection, embedded = engine.embed_faces(image)
    to_index, unindexed = select_faces(embedded, req.quality_filter, req.max_faces)

    now = clock.now()
    image_id = str(uuid.uuid4())
    records = [FaceRecord(StoredFace(
        face_id=str(uuid.uuid4()), collection_id=collection.collection_id,
        subject_id=req.subject_id, image_id=image_id, image_sha256=image.sha256,
        bounding_box=found.detail.bounding_box, confidence=found.detail.confidence,
        created_at=now, quality=found.detail.quality, pose=found.detail.pose,
        width_px=found.detail.width_px, height_px=found.detail.height_px,
        embedding=embedding_to_bytes(found.embedding)), shown(found.detail, req.attributes))
        for found in to_index]
    unindexed = [replace(u, detail=shown(u.detail, req.attributes)) for u in unindexed]

    with uow:
        # Again inside the write: the collection may have gone, or the consent been
        # erased, while the engine ran.
        collection = load_collection(uow, actor, req.collection_id)
        _check_engine(collection, engine)
        _require_consent(uow, collection, req.subject_id, req.consent)
        if records:
            version = uow.collections.bump_version(collection.collection_id)
            records = [FaceRecord(replace(r.face, added_version=version), r.detail)
                       for r in records]
            consent = req.consent
            if consent is not None and _is_new_consent(uow, collection.collection_id,
                                                       req.subject_id, consent):
                record_consent_in(uow, collection, req.subject_id, consent, actor=actor,
                                  clock=clock)
            else:
                uow.subjects.ensure(Subject(collection.collection_id, req.subject_id, now))
            for record in records:
                uow.faces.add(record.face)
        event = uow.audit.append(AuditEvent(
            action=Action.FACE_INDEX, outcome="indexed" if records else "no_face_indexed",
            actor=actor, resource=resource(collection.collection_id, req.subject_id),
            subject_id=req.subject_id, engine=engine.name, model_version=engine.model_version,
            input_digests=(image.sha256,),
            scores={"face_count": len(detection.faces), "indexed_count": len(records),
                    "unindexed_count": len(unindexed)},
            details={"face_ids": [r.face.face_id for r in records][:16],
                     "quality_filter": req.quality_filter.value}))
        uow.commit()
    return IndexFacesResult(face_records=records, unindexed_faces=unindexed,
                            face_model_version=engine.model_version,
                            orientation_correction=detection.orientation_correction,
                            image_sha256=image.sha256, audit_event_id=event.id)

"""Use case: index the faces of an image into a collection (Rekognition's IndexFaces),
under a subject (ExternalImageId), with the subject's consent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.collections import (
    Collection,
    ConsentRequired,
    FaceChip,
    MultipleFaces,
    MultipleFacesInPhoto,
    QualityFilter,
    StoredFace,
    Subject,
    UnindexedReason,
    consent_expired_error,
    consent_lapsed,
    embedding_to_bytes,
    multiple_faces_warning,
    quality_reasons,
)
from faceapi.domain.engine_values import NotIndexedFace
from faceapi.domain.errors import BlobStoreUnavailable, InvalidParameter
from faceapi.domain.faces import Attributes, EmbeddedFace, FaceDetail, OrientationCorrection
from faceapi.domain.images import DecodedImage
from faceapi.domain.policies import NO_POLICIES, PolicySet
from faceapi.services import audit_trail
from faceapi.services.collection_lookup import load_collection, resource
from faceapi.services.collections import (
    ConsentInput,
    check_consent,
    check_engine,
    check_id,
    compensate,
    record_consent_in,
)
from faceapi.services.enrollment_checks import (
    NewFace,
    TemplateWarnings,
    bound_policies,
    needs_existing_faces,
    template_warnings,
)
from faceapi.services.face_crops import discard_crops, face_crop, write_crops
from faceapi.services.ports import (
    BlobStore,
    FaceCollections,
    FaceEngine,
    ImageDecoder,
    UnitOfWork,
    chip_embedder,
    remote_collections,
)

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
    # True (REST and `faceapi import` without max_faces): a photo with several faces
    # follows the collection's `multiple_faces` rule (refuse, or the largest face with
    # a warning). False: Rekognition's IndexFaces semantics (the emulator, an explicit
    # max_faces): the largest faces up to max_faces, the rest in unindexed_faces.
    collection_rule: bool = False


@dataclass(frozen=True)
class FaceRecord:
    face: StoredFace
    detail: FaceDetail


@dataclass(frozen=True)
class IndexFacesResult:
    face_records: list[FaceRecord]
    unindexed_faces: list[NotIndexedFace]
    face_model_version: str
    orientation_correction: OrientationCorrection | None
    image_sha256: str
    audit_event_id: str
    warnings: tuple[str, ...] = ()


def select_faces(faces: list[EmbeddedFace], quality_filter: QualityFilter,
                 max_faces: int | None) -> tuple[list[EmbeddedFace], list[NotIndexedFace]]:
    """Split detected faces into those to index and those not, with reasons.

    Like Rekognition: the quality filter goes first, then the largest faces (by box
    area) are kept up to `max_faces`, and the rest are EXCEEDS_MAX_FACES."""
    passing: list[EmbeddedFace] = []
    unindexed: list[NotIndexedFace] = []
    for found in faces:
        reasons = quality_reasons(found.detail, quality_filter)
        if not found.embedding:
            reasons.append(UnindexedReason.LOW_FACE_QUALITY)
        if reasons:
            unindexed.append(NotIndexedFace(tuple(reasons), found.detail))
        else:
            passing.append(found)
    passing.sort(key=lambda f: -(f.detail.bounding_box.width * f.detail.bounding_box.height))
    if max_faces is not None and len(passing) > max_faces:
        unindexed.extend(NotIndexedFace((UnindexedReason.EXCEEDS_MAX_FACES,), f.detail)
                         for f in passing[max_faces:])
        passing = passing[:max_faces]
    return passing, unindexed


def shown(detail: FaceDetail, attributes: Attributes) -> FaceDetail:
    """The detail as IndexFaces returns it: DEFAULT leaves out eyes/mouth open, like
    Rekognition's DetectionAttributes (box, confidence, pose, quality, landmarks)."""
    if attributes is Attributes.ALL:
        return detail
    return replace(detail, eyes_open=None, mouth_open=None)


def _require_consent(uow: UnitOfWork, collection: Collection, subject_id: str,
                     consent: ConsentInput | None, now: datetime) -> None:
    """A consent sent with the request is recorded with the faces (checked to be still
    in force by `check_consent`); otherwise the one on record must not have lapsed (in
    any collection: a lapsed consent ended the basis the subject was enrolled on), and
    must exist where the collection requires one."""
    if consent is not None:
        return
    current = uow.consents.current(collection.collection_id, subject_id)
    if consent_lapsed(current, now):
        raise consent_expired_error(collection.collection_id, subject_id)
    if collection.consent_required and current is None:
        raise ConsentRequired(
            f"collection {collection.collection_id!r} needs a recorded consent for subject "
            f"{subject_id!r}: send consent {{basis, reference}} with the request or record "
            "it first", details={"collection_id": collection.collection_id})


def _is_new_consent(uow: UnitOfWork, collection_id: str, subject_id: str,
                    consent: ConsentInput, now: datetime) -> bool:
    # Clients resend the same consent with every image of a subject: record it once
    # (a new expiry, or one sent after the old consent lapsed, is a new record).
    current = uow.consents.current(collection_id, subject_id)
    if current is None or current.lapsed(now):
        return True
    expires = consent.expires_at.astimezone(UTC) if consent.expires_at else None
    return (current.basis, current.reference, current.expires_at) != (
        consent.basis, consent.reference, expires)


def index_faces(req: IndexFacesRequest, *, actor: Actor, engine: FaceEngine, uow: UnitOfWork,
                clock: Clock, decoder: ImageDecoder, blobs: BlobStore,
                policies: PolicySet = NO_POLICIES) -> IndexFacesResult:
    """Detect, filter and store the faces of one image under a subject, audited; on an
    engine that keeps faces itself, index them there and keep their ids. `policies`
    (those in force) let the answer warn when a face makes a poor template under the
    collection's policies (services/enrollment_checks.py)."""
    _check_request(req, clock.now())
    # Cheap checks first, in a short read, so a doomed request costs no engine time.
    with uow:
        collection = _writable_collection(uow, req, actor=actor, engine=engine,
                                          now=clock.now())

    image = decoder.decode(req.image)
    remote = remote_collections(engine)
    # Under the collection's rule one face at most is enrolled, whatever the rule says.
    engine_req = replace(req, max_faces=1) if req.collection_rule else req
    found = (_index_remote(remote, engine_req, image, engine.template_version)
             if remote is not None else _index_local(engine, engine_req, image))
    remote_ids = [f.engine_face_id for f, _ in found.faces if f.engine_face_id]
    now = clock.now()
    records: list[FaceRecord] = []
    crops: dict[str, bytes] = {}
    try:
        warnings = _group_photo(req, collection, found, actor=actor, engine=engine,
                                uow=uow, sha256=image.sha256)
        records, unindexed = _face_records(req, collection, image, found, now)
        checked = _template_check(req, collection, found, policies, engine=engine, uow=uow)
        warnings += checked.messages
        if collection.keep_face_crops:
            crops = _face_crops(image, records, found)
        records, event_id = _write_enrollment(req, records, unindexed, crops=crops,
                                              image=image, found=found, checked=checked,
                                              actor=actor, engine=engine, uow=uow,
                                              clock=clock, blobs=blobs, now=now)
    except BaseException as exc:
        discard_crops(blobs, req.collection_id, crops)
        if remote is not None and remote_ids:
            # Compensation: the engine's faces must not outlive a failed enrollment.
            compensate(lambda: remote.delete_faces(req.collection_id, remote_ids),
                       "index_faces")
        if isinstance(exc, BlobStoreUnavailable):
            # Refused for want of the blob store (disk full, read-only): the refusal is
            # on record, as the enrollment would have been; nothing else was written.
            audit_trail.record(AuditEvent(
                action=Action.FACE_INDEX, outcome="refused", actor=actor,
                resource=resource(req.collection_id, req.subject_id),
                subject_id=req.subject_id, engine=engine.name,
                model_version=engine.model_version, input_digests=(image.sha256,),
                reason=exc.code, scores={"face_count": found.face_count}), uow=uow)
        raise
    return IndexFacesResult(face_records=records, unindexed_faces=unindexed,
                            face_model_version=engine.model_version,
                            orientation_correction=found.orientation_correction,
                            image_sha256=image.sha256, audit_event_id=event_id,
                            warnings=warnings)


def _group_photo(req: IndexFacesRequest, collection: Collection, found: _Found, *,
                 actor: Actor, engine: FaceEngine, uow: UnitOfWork,
                 sha256: str) -> tuple[str, ...]:
    """A photo with several faces, said plainly: refused (audited, 422 naming the count)
    when the collection's rule is `refuse`, else the warning the answer carries. Counted
    are the faces that pass the quality filter (any could be the subject's); a tiny face
    in the background that could not be enrolled anyway changes nothing."""
    left_out = sum(UnindexedReason.EXCEEDS_MAX_FACES in u.reasons for u in found.unindexed)
    face_count = len(found.faces) + left_out
    if face_count <= 1:
        return ()
    if req.collection_rule and collection.multiple_faces is MultipleFaces.REFUSE:
        with uow:
            uow.audit.append(AuditEvent(
                action=Action.FACE_INDEX, outcome="refused", actor=actor,
                resource=resource(collection.collection_id, req.subject_id),
                subject_id=req.subject_id, engine=engine.name,
                model_version=engine.model_version, input_digests=(sha256,),
                reason=MultipleFacesInPhoto.code,
                scores={"face_count": face_count}))
            uow.commit()
        raise MultipleFacesInPhoto(
            f"the photo shows {face_count} faces; collection "
            f"{collection.collection_id!r} enrolls photos of one face only "
            "(multiple_faces: refuse)",
            details={"face_count": face_count, "collection_id": collection.collection_id})
    return (multiple_faces_warning(face_count),) if left_out else ()


def _template_check(req: IndexFacesRequest, collection: Collection, found: _Found,
                    policies: PolicySet, *, engine: FaceEngine,
                    uow: UnitOfWork) -> TemplateWarnings:
    """The enrollment warnings for the faces about to be stored (nothing to say when
    none is)."""
    if not found.faces:
        return TemplateWarnings()
    new = [NewFace(face.face_id, detail, face.vector() if face.embedding else None)
           for face, detail in found.faces]
    bound = bound_policies(policies, collection.policies)
    existing = []
    if needs_existing_faces(new, bound):
        with uow:
            existing = uow.faces.list_for_subject(collection.collection_id, req.subject_id)
    return template_warnings(new, existing, bound, engine)


def _check_request(req: IndexFacesRequest, now: datetime) -> None:
    """Pre-checks on the request alone: ids, the face limit, the consent's reference
    and expiry."""
    check_id("subject_id", req.subject_id)
    if req.max_faces is not None and not 1 <= req.max_faces <= MAX_FACES_LIMIT:
        raise InvalidParameter(f"max_faces must be between 1 and {MAX_FACES_LIMIT}",
                               details={"field": "max_faces"})
    if req.consent is not None:
        check_consent(req.consent, now)


def _writable_collection(uow: UnitOfWork, req: IndexFacesRequest, *, actor: Actor,
                         engine: FaceEngine, now: datetime) -> Collection:
    """The collection, if this caller may enroll the subject in it with this engine."""
    collection = load_collection(uow, actor, req.collection_id)
    check_engine(collection, engine)
    _require_consent(uow, collection, req.subject_id, req.consent, now)
    return collection


def _face_records(req: IndexFacesRequest, collection: Collection, image: DecodedImage,
                  found: _Found, now: datetime
                  ) -> tuple[list[FaceRecord], list[NotIndexedFace]]:
    """The found faces as stored rows of this subject and image, and the faces not
    indexed, both with the details the caller asked to see."""
    image_id = str(uuid.uuid4())
    records = [FaceRecord(replace(face, collection_id=collection.collection_id,
                                  subject_id=req.subject_id, image_id=image_id,
                                  image_sha256=image.sha256, created_at=now),
                          shown(detail, req.attributes))
               for face, detail in found.faces]
    unindexed = [replace(u, detail=shown(u.detail, req.attributes)) for u in found.unindexed]
    return records, unindexed


def _face_crops(image: DecodedImage, records: list[FaceRecord],
                found: _Found) -> dict[str, bytes]:
    """A small crop of each indexed face, by face id (for reviewers)."""
    crops: dict[str, bytes] = {}
    for record in records:
        crop = face_crop(image, record.face.bounding_box, found.orientation_correction)
        if crop is not None:
            crops[record.face.face_id] = crop
    return crops


def _write_enrollment(req: IndexFacesRequest, records: list[FaceRecord],
                      unindexed: list[NotIndexedFace], *, crops: dict[str, bytes],
                      image: DecodedImage, found: _Found, checked: TemplateWarnings,
                      actor: Actor, engine: FaceEngine, uow: UnitOfWork, clock: Clock,
                      blobs: BlobStore, now: datetime) -> tuple[list[FaceRecord], str]:
    """One unit of work: the faces (with the collection's new version), the subject or
    its consent, the crops and the audit event. Returns the stored records and the
    event's id; the caller discards crops and compensates if this raises."""
    with uow:
        # Again inside the write: the collection may have gone, or the consent been
        # erased or lapsed, while the engine ran.
        collection = _writable_collection(uow, req, actor=actor, engine=engine,
                                          now=clock.now())
        if records:
            version = uow.collections.bump_version(collection.collection_id)
            records = [FaceRecord(replace(r.face, added_version=version), r.detail)
                       for r in records]
            consent = req.consent
            if consent is not None and _is_new_consent(uow, collection.collection_id,
                                                       req.subject_id, consent,
                                                       clock.now()):
                record_consent_in(uow, collection, req.subject_id, consent, actor=actor,
                                  clock=clock)
            else:
                uow.subjects.ensure(Subject(collection.collection_id, req.subject_id, now))
            for record in records:
                uow.faces.add(record.face)
            if collection.keep_chips:
                _keep_chips(uow, records, found, engine)
            if collection.keep_face_crops:
                # Before the commit, deleted again by the caller if it does not happen
                # (services/face_crops.py explains why not after).
                write_crops(blobs, collection.collection_id, crops)
        event = uow.audit.append(AuditEvent(
            action=Action.FACE_INDEX, outcome="indexed" if records else "no_face_indexed",
            actor=actor, resource=resource(collection.collection_id, req.subject_id),
            subject_id=req.subject_id, engine=engine.name,
            model_version=engine.model_version, input_digests=(image.sha256,),
            scores={"face_count": found.face_count, "indexed_count": len(records),
                    "unindexed_count": len(unindexed),
                    **({"subject_similarity": round(checked.subject_similarity, 4)}
                       if records and checked.subject_similarity is not None else {})},
            details={"face_ids": [r.face.face_id for r in records][:16],
                     "quality_filter": req.quality_filter.value,
                     **({"warning": "multiple_faces"} if any(
                         UnindexedReason.EXCEEDS_MAX_FACES in u.reasons for u in unindexed)
                        else {}),
                     **({"template_warnings": list(checked.codes)}
                        if records and checked.codes else {})}))
        uow.commit()
    return records, event.id


def _keep_chips(uow: UnitOfWork, records: list[FaceRecord], found: _Found,
                engine: FaceEngine) -> None:
    """Each new face's aligned chip, sealed by the store, in the enrollment's own
    transaction (so it is erased with the face and never outlives a failed one)."""
    embedder = chip_embedder(engine)
    if embedder is None:
        return
    for record in records:
        pixels = found.chips.get(record.face.face_id)
        if pixels:
            uow.chips.add(FaceChip(collection_id=record.face.collection_id,
                                   subject_id=record.face.subject_id,
                                   face_id=record.face.face_id,
                                   chip_format=embedder.chip_format, pixels=pixels))


@dataclass(frozen=True)
class _Found:
    """What the engine found: faces to store (ids, boxes, descriptors or the engine's
    face ids; the rest filled in by index_faces) and faces not indexed."""

    faces: list[tuple[StoredFace, FaceDetail]]
    unindexed: list[NotIndexedFace]
    face_count: int
    orientation_correction: OrientationCorrection | None
    # The aligned chip of each face to store, by face id (engines that cut chips).
    chips: dict[str, bytes] = field(default_factory=dict, repr=False)


def _stored(detail: FaceDetail, *, template_version: str, embedding: bytes | None = None,
            engine_face_id: str | None = None) -> StoredFace:
    return StoredFace(
        face_id=str(uuid.uuid4()), collection_id="", subject_id="", image_id="",
        image_sha256="", bounding_box=detail.bounding_box, confidence=detail.confidence,
        created_at=datetime.min, quality=detail.quality, pose=detail.pose,
        width_px=detail.width_px, height_px=detail.height_px, embedding=embedding,
        engine_face_id=engine_face_id, template_version=template_version)


def _index_local(engine: FaceEngine, req: IndexFacesRequest, image: DecodedImage) -> _Found:
    """Descriptors computed here, kept in our store."""
    detection, embedded = engine.embed_faces(image)
    to_index, unindexed = select_faces(embedded, req.quality_filter, req.max_faces)
    faces = [(_stored(f.detail, embedding=embedding_to_bytes(f.embedding),
                      template_version=engine.template_version), f) for f in to_index]
    return _Found([(stored, f.detail) for stored, f in faces], unindexed,
                  len(detection.faces), detection.orientation_correction,
                  chips={stored.face_id: f.chip for stored, f in faces if f.chip})


def _index_remote(remote: FaceCollections, req: IndexFacesRequest, image: DecodedImage,
                  template_version: str) -> _Found:
    """Faces kept by the engine (IndexFaces there); we keep its face ids."""
    result = remote.index_faces(req.collection_id, image, req.subject_id,
                                max_faces=req.max_faces, quality_filter=req.quality_filter)
    faces = [(_stored(replace(r.detail, bounding_box=r.face.bounding_box,
                              confidence=r.face.confidence),
                      engine_face_id=r.face.face_id, template_version=template_version),
              r.detail) for r in result.records]
    unindexed = list(result.unindexed)
    return _Found(faces, unindexed, len(faces) + len(unindexed),
                  result.orientation_correction)

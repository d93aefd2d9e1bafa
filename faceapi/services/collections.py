"""Use cases: create, list, describe and delete collections; read subjects; record
consent."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog

from faceapi.domain.access import (
    ADMIN,
    Forbidden,
    collection_filter,
    require_collection_access,
)
from faceapi.domain.audit import Action, Actor, AuditEvent, DetailValue
from faceapi.domain.clock import Clock
from faceapi.domain.collections import (
    Collection,
    CollectionExists,
    CollectionStats,
    Consent,
    ConsentBasis,
    EngineMismatch,
    MultipleFaces,
    StoredFace,
    Subject,
    valid_id,
)
from faceapi.domain.errors import FaceApiError, InvalidParameter, NotFound
from faceapi.domain.policies import PolicySet, check_binding
from faceapi.services.collection_lookup import load_collection, resource
from faceapi.services.erase import erase_collection_data, run_cleanups
from faceapi.services.face_crops import discard_crops
from faceapi.services.ports import (
    BlobStore,
    ErasedData,
    FaceCollections,
    FaceEngine,
    SubjectEraser,
    UnitOfWork,
    chip_embedder,
    remote_collections,
)

log = structlog.get_logger(__name__)

MAX_PAGE = 1000
# Settings.default_collection_policies' default, for callers without settings (tests).
DEFAULT_BINDING: tuple[str, ...] = ("login", "photo_tagging")
SYSTEM_ROLE = "system"  # the CLI and jobs (domain.audit.Actor.system)


def check_id(kind: str, value: str) -> None:
    if not valid_id(value):
        raise InvalidParameter(
            f"{kind} must be 1-128 characters of letters, digits, '_', '.' or '-'",
            details={"field": kind})


def check_engine(collection: Collection, engine: FaceEngine) -> None:
    """A collection's faces are only usable by the engine that indexed them. Where our
    store keeps the descriptors, each face records its template version and is only
    compared with probes of the same version (a model change leaves the faces in place
    until `faceapi collections reindex` moves them; a detector change alone changes no
    template version). An engine that keeps the faces itself (Rekognition) needs the
    model version the collection was made with."""
    if collection.engine == engine.name and remote_collections(engine) is None:
        return
    if (collection.engine, collection.model_version) != (engine.name, engine.model_version):
        raise EngineMismatch(
            f"collection {collection.collection_id!r} holds faces of {collection.engine} "
            f"{collection.model_version}; the engine in use is {engine.name} "
            f"{engine.model_version}",
            details={"collection_id": collection.collection_id})


@dataclass(frozen=True)
class CreateCollectionRequest:
    collection_id: str
    description: str = ""
    consent_required: bool = True
    keep_face_crops: bool = True
    keep_chips: bool = True
    # The verify/search policies that may be used on it; None: the configured default.
    policies: tuple[str, ...] | None = None
    multiple_faces: MultipleFaces = MultipleFaces.REFUSE


def create_collection(req: CreateCollectionRequest, *, actor: Actor, engine: FaceEngine,
                      uow: UnitOfWork, clock: Clock, policies: PolicySet | None = None,
                      default_policies: Sequence[str] = DEFAULT_BINDING) -> Collection:
    """Create an empty collection bound to the engine and model version in use (and, on
    an engine that keeps faces itself, the engine's collection), and to the policies
    that may be used on it (`req.policies`, else `default_policies`; checked against
    `policies` when given)."""
    check_id("collection_id", req.collection_id)
    require_collection_access(actor, req.collection_id)
    wanted = req.policies if req.policies is not None else tuple(default_policies)
    bound = check_binding(wanted, policies) if policies is not None else \
        tuple(sorted(set(wanted)))
    collection = Collection(collection_id=req.collection_id, description=req.description,
                            engine=engine.name, model_version=engine.model_version,
                            created_at=clock.now(), version=0,
                            consent_required=req.consent_required,
                            keep_face_crops=req.keep_face_crops,
                            keep_chips=req.keep_chips and chip_embedder(engine) is not None,
                            policies=bound, multiple_faces=req.multiple_faces)
    remote = remote_collections(engine)
    if remote is not None:
        with uow:
            if uow.collections.get(req.collection_id) is not None:
                raise CollectionExists(f"collection {req.collection_id!r} already exists",
                                       details={"collection_id": req.collection_id})
        remote.create_collection(req.collection_id)
    try:
        with uow:
            uow.collections.add(collection)
            uow.audit.append(AuditEvent(
                action=Action.COLLECTION_CREATE, outcome="created", actor=actor,
                resource=resource(req.collection_id), engine=engine.name,
                model_version=engine.model_version,
                details={"consent_required": req.consent_required,
                         "keep_face_crops": req.keep_face_crops,
                         "multiple_faces": req.multiple_faces.value,
                         "keep_chips": collection.keep_chips,
                         "policies": list(bound)}))
            uow.commit()
    except BaseException:
        if remote is not None:
            # Compensation: the engine's collection must not outlive a failed create.
            compensate(lambda: remote.delete_collection(req.collection_id),
                        "collection_create")
        raise
    return collection


def set_collection_policies(collection_id: str, names: Sequence[str], *, actor: Actor,
                            uow: UnitOfWork, policies: PolicySet,
                            request_id: str | None = None) -> Collection:
    """Re-bind a collection's policies (an unscoped admin only), audited with the old
    and the new binding in the same transaction."""
    if actor.role not in (ADMIN, SYSTEM_ROLE) or \
            getattr(actor, "collections", None) is not None or \
            getattr(actor, "policies", None) is not None:
        # A scoped admin could otherwise move a watchlist out from under its reviewers.
        raise Forbidden("only an admin key without a collection or policy scope may change "
                        "a collection's policies", details={"collection_id": collection_id})
    bound = check_binding(names, policies)
    with uow:
        collection = load_collection(uow, actor, collection_id)
        uow.collections.set_policies(collection_id, bound)
        uow.audit.append(AuditEvent(
            action=Action.COLLECTION_POLICIES, outcome="bound", actor=actor,
            resource=resource(collection_id), request_id=request_id,
            details={"old_policies": list(collection.policies), "new_policies": list(bound)}))
        uow.commit()
    return replace(collection, policies=bound)


def compensate(undo: Callable[[], object], what: str) -> None:
    """Undo a remote engine change after our transaction failed; a failure is logged
    (by operation name only) and does not hide the original error."""
    try:
        undo()
    except (FaceApiError, OSError) as exc:
        log.error("remote_compensation_failed", operation=what,
                  error_type=type(exc).__name__)


@dataclass(frozen=True)
class CollectionPage:
    collections: list[Collection]
    next_token: str | None


def list_collections(*, actor: Actor, uow: UnitOfWork, limit: int = 100,
                     next_token: str | None = None) -> CollectionPage:
    """Collections in the caller's scope, ordered by id, a page at a time."""
    limit = max(1, min(limit, MAX_PAGE))
    scope = collection_filter(actor)
    found: list[Collection] = []
    after = next_token
    exhausted = False
    with uow:
        # Keyset pages over the table; a scoped key skips what it may not see.
        while len(found) <= limit and not exhausted:
            batch = uow.collections.page(limit=limit, after=after)
            found.extend(c for c in batch if scope is None or c.collection_id in scope)
            exhausted = len(batch) < limit
            if batch:
                after = batch[-1].collection_id
    page = found[:limit]
    more = len(found) > limit or not exhausted
    return CollectionPage(page, page[-1].collection_id if more and page else None)


@dataclass(frozen=True)
class CollectionDescription:
    collection: Collection
    stats: CollectionStats


def describe_collection(collection_id: str, *, actor: Actor,
                        uow: UnitOfWork) -> CollectionDescription:
    """One collection with its face and subject counts."""
    with uow:
        collection = load_collection(uow, actor, collection_id)
        stats = replace(uow.collections.stats(collection_id),
                        template_versions=uow.faces.template_counts(collection_id))
        return CollectionDescription(collection, stats)


def delete_collection(collection_id: str, *, actor: Actor, uow: UnitOfWork,
                      erasers: tuple[SubjectEraser, ...] = (),
                      on_erased: Callable[[str], None] | None = None) -> None:
    """Delete a collection with every subject, face, consent and the data the other
    subsystems hold about its subjects (review evidence, lockout state)."""
    with uow:
        collection = load_collection(uow, actor, collection_id)
        stats = uow.collections.stats(collection_id)
        after_commit = erase_collection_data(uow, collection_id, erasers)
        uow.collections.delete(collection_id)
        uow.audit.append(AuditEvent(
            action=Action.COLLECTION_DELETE, outcome="deleted", actor=actor,
            resource=resource(collection_id), engine=collection.engine,
            model_version=collection.model_version,
            scores={"face_count": stats.face_count, "subject_count": stats.subject_count}))
        uow.commit()
    run_cleanups(after_commit)
    if on_erased is not None:
        on_erased(collection_id)


@dataclass(frozen=True)
class SubjectView:
    subject: Subject
    consent: Consent | None
    faces: list[StoredFace]
    model_version: str


def get_subject(collection_id: str, subject_id: str, *, actor: Actor,
                uow: UnitOfWork) -> SubjectView:
    """A subject with its current consent and its faces (without descriptors)."""
    with uow:
        collection = load_collection(uow, actor, collection_id)
        subject = uow.subjects.get(collection_id, subject_id)
        if subject is None:
            raise NotFound(f"subject {subject_id!r} not found in collection {collection_id!r}",
                           details={"collection_id": collection_id})
        faces = [_without_embedding(f) for f in
                 uow.faces.list_for_subject(collection_id, subject_id)]
        return SubjectView(subject, uow.consents.current(collection_id, subject_id), faces,
                           collection.model_version)


def _without_embedding(face: StoredFace) -> StoredFace:
    return replace(face, embedding=None)


@dataclass(frozen=True)
class ConsentInput:
    basis: ConsentBasis
    reference: str
    # When the consent lapses (timezone-aware, in the future); None: it does not.
    expires_at: datetime | None = None


def check_consent_reference(reference: str) -> None:
    if not reference.strip() or len(reference) > 256:
        raise InvalidParameter("consent.reference must be 1-256 characters",
                               details={"field": "consent.reference"})


def check_consent(consent: ConsentInput, now: datetime) -> None:
    """The reference, and an expiry that is a moment (with its zone) still to come: a
    consent that has already lapsed when it is recorded allows nothing."""
    check_consent_reference(consent.reference)
    expires = consent.expires_at
    if expires is None:
        return
    if expires.tzinfo is None or expires.utcoffset() is None:
        raise InvalidParameter("consent.expires_at needs a time zone (e.g. 2027-01-31T00:00:00Z)",
                               details={"field": "consent.expires_at"})
    if expires <= now:
        raise InvalidParameter("consent.expires_at must be in the future",
                               details={"field": "consent.expires_at"})


def record_consent_in(uow: UnitOfWork, collection: Collection, subject_id: str,
                      consent: ConsentInput, *, actor: Actor, clock: Clock) -> Consent:
    """Record a consent inside the caller's open unit of work, with its audit event."""
    now = clock.now()
    check_consent(consent, now)
    uow.subjects.ensure(Subject(collection.collection_id, subject_id, now))
    expires = consent.expires_at.astimezone(UTC) if consent.expires_at is not None else None
    record = Consent(collection_id=collection.collection_id, subject_id=subject_id,
                     basis=consent.basis, reference=consent.reference, recorded_at=now,
                     recorded_by=actor.key_id, expires_at=expires)
    uow.consents.record(record)
    # The reference is the operator's pointer to evidence; it goes to the store, and
    # only the basis (and the expiry) goes to the audit trail (a reference may carry
    # personal data).
    details: dict[str, DetailValue] = {"basis": consent.basis.value}
    if expires is not None:
        details["expires_at"] = expires.isoformat()
    uow.audit.append(AuditEvent(
        action=Action.SUBJECT_CONSENT, outcome="recorded", actor=actor,
        resource=resource(collection.collection_id, subject_id), subject_id=subject_id,
        details=details))
    return record


def record_consent(collection_id: str, subject_id: str, consent: ConsentInput, *,
                   actor: Actor, uow: UnitOfWork, clock: Clock) -> Consent:
    """Record the basis for processing a subject's faces (creates the subject)."""
    check_id("subject_id", subject_id)
    check_consent(consent, clock.now())
    with uow:
        collection = load_collection(uow, actor, collection_id)
        record = record_consent_in(uow, collection, subject_id, consent, actor=actor,
                                   clock=clock)
        uow.commit()
    return record


@dataclass(frozen=True)
class FaceListPage:
    collection: Collection
    faces: list[StoredFace]
    next_token: str | None


def list_faces(collection_id: str, *, actor: Actor, uow: UnitOfWork,
               subject_id: str | None = None, limit: int = 100,
               next_token: str | None = None) -> FaceListPage:
    """Faces of a collection (optionally of one subject), ordered by face id, paged."""
    limit = max(1, min(limit, MAX_PAGE))
    with uow:
        collection = load_collection(uow, actor, collection_id)
        faces = uow.faces.page(collection_id, subject_id=subject_id, limit=limit + 1,
                               after=next_token)
    page = faces[:limit]
    return FaceListPage(collection, page,
                        page[-1].face_id if len(faces) > limit and page else None)


MAX_DELETE = 4096  # Rekognition's DeleteFaces limit


@dataclass(frozen=True)
class DeleteFacesResult:
    deleted: list[str]
    not_found: list[str]


def delete_faces(collection_id: str, face_ids: list[str], *, actor: Actor,
                 uow: UnitOfWork, engine: FaceEngine, blobs: BlobStore) -> DeleteFacesResult:
    """Delete faces by id (Rekognition's DeleteFaces) with their crops, and from the
    engine when it keeps them; unknown ids are reported."""
    wanted = list(dict.fromkeys(face_ids))
    if not wanted or len(wanted) > MAX_DELETE:
        raise InvalidParameter(f"face_ids must hold 1 to {MAX_DELETE} ids",
                               details={"field": "face_ids"})
    with uow:
        collection = load_collection(uow, actor, collection_id)
        remote = remote_collections(engine)
        if remote is not None and collection.engine == engine.name:
            # The engine first, inside the open transaction: if it fails nothing is
            # deleted here and the caller can retry; if our commit fails after it, a
            # retry finds the engine's faces gone (not an error) and deletes the rows.
            _delete_remote(remote, collection_id,
                           uow.faces.engine_face_ids(collection_id, wanted))
        deleted = uow.faces.delete(collection_id, wanted)
        if deleted:
            uow.collections.bump_version(collection_id)
        gone = set(deleted)
        missing = [f for f in wanted if f not in gone]
        uow.audit.append(AuditEvent(
            action=Action.FACE_DELETE, outcome="deleted" if deleted else "not_found",
            actor=actor, resource=resource(collection_id), engine=collection.engine,
            model_version=collection.model_version,
            scores={"deleted_count": len(deleted), "not_found_count": len(missing)},
            details={"face_ids": deleted[:16]}))
        uow.commit()
    discard_crops(blobs, collection_id, deleted)
    ordered = [f for f in wanted if f in gone]
    return DeleteFacesResult(deleted=ordered, not_found=missing)


def _delete_remote(remote: FaceCollections, collection_id: str,
                   engine_face_ids: list[str]) -> None:
    for start in range(0, len(engine_face_ids), MAX_DELETE):
        remote.delete_faces(collection_id, engine_face_ids[start:start + MAX_DELETE])


class RemoteFacesEraser:
    """A `faceapi.services.erase.SubjectEraser` for engines that keep faces themselves
    (Rekognition): deletes the subject's faces from the engine's collection, or the
    engine's whole collection when the collection is deleted. It runs inside the
    erasure's unit of work, before the commit: if the engine refuses, nothing is
    erased and the erasure can be retried; if our commit fails afterwards, the retry
    finds the engine's faces already gone, which is not an error."""

    def __init__(self, engine: FaceEngine, remote: FaceCollections) -> None:
        self._engine = engine
        self._remote = remote

    def __call__(self, uow: UnitOfWork, collection_id: str,
                 subject_id: str | None) -> ErasedData:
        collection = uow.collections.get(collection_id)
        if collection is None or collection.engine != self._engine.name:
            return ErasedData()
        if subject_id is None:
            with contextlib.suppress(NotFound):  # gone already: a retry
                self._remote.delete_collection(collection_id)
            return ErasedData(counts={"remote_collection": 1})
        ids = [engine_id for _, engine_id in uow.faces.subject_face_ids(collection_id,
                                                                         subject_id)
               if engine_id]
        _delete_remote(self._remote, collection_id, ids)
        return ErasedData(counts={"remote_face": len(ids)})

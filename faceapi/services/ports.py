"""Every port the services type against: the unit of work and its repositories, the
face engine and its collections, the search index, the blob store, erasure hooks.

Free of SQLAlchemy, Flask and SDKs on purpose: services and their unit tests import
only this and the domain. Adapters implement these in faceapi/adapters/ (store/,
engines/, search/, blobs.py); fakes live in tests/fakes.py.

To add a repository: declare its Protocol here, add a read-only property with the same
name to `UnitOfWork` below, and implement it in faceapi/adapters/store/ (see store/uow.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Protocol, runtime_checkable

from faceapi.domain.access import ApiKey
from faceapi.domain.audit import AuditEvent, AuditQuery, Checkpoint, RecordedEvent
from faceapi.domain.collections import (
    Collection,
    CollectionStats,
    Consent,
    FaceChip,
    QualityFilter,
    StoredFace,
    Subject,
)
from faceapi.domain.decisions import Decision, Review, ReviewStatus, ReviewVote
from faceapi.domain.engine_values import (
    CollectionIdPage,
    CollectionInfo,
    CollectionSearch,
    FaceDeletion,
    IndexedFacePage,
    IndexResult,
    S3Object,
)
from faceapi.domain.faces import Attributes, Capabilities, Comparison, Detection, EmbeddedFace
from faceapi.domain.images import DecodedImage
from faceapi.domain.liveness import Attestation
from faceapi.domain.lockout import LockoutKey, LockoutState
from faceapi.domain.policies import PolicyVersion
from faceapi.domain.webhooks import Delivery, DeliveryStatus, Webhook


class AuditLog(Protocol):
    """The audit trail inside one unit of work. Appends join the open transaction."""

    def append(self, event: AuditEvent) -> RecordedEvent:
        """Check, chain and write one event; it commits or rolls back with the change."""
        ...

    def get(self, event_id: str) -> RecordedEvent | None:
        """One event by its uuid, or None."""
        ...

    def query(self, query: AuditQuery, limit: int) -> list[RecordedEvent]:
        """Up to `limit` events matching the filters, in the query's order."""
        ...

    def iter_events(self, query: AuditQuery | None = None) -> Iterator[RecordedEvent]:
        """Every matching event, oldest first, streamed (verification, export)."""
        ...

    def head(self) -> RecordedEvent | None:
        """The newest event, or None for an empty trail."""
        ...

    def checkpoints(self) -> Sequence[Checkpoint]:
        """Every signed checkpoint, oldest first."""
        ...

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (on demand); None if the trail is empty or the
        head is already signed."""
        ...


class AuditUnitOfWork(Protocol):
    """The part of a unit of work that use cases which only record need (detect,
    compare, the audit trail's own use cases); any UnitOfWork is one."""

    @property
    def audit(self) -> AuditLog:
        """The audit trail, written in this transaction."""
        ...

    def __enter__(self) -> AuditUnitOfWork:
        ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        ...

    def commit(self) -> None:
        """Commit the audit events."""
        ...

    def rollback(self) -> None:
        """Discard everything done in this block."""
        ...


class UnitOfWork(AuditUnitOfWork, Protocol):
    """One transaction: `with uow:` opens it, `uow.commit()` makes the change and its
    audit events durable together, leaving the block without commit rolls everything
    back, audit events included. `audit`, `__exit__`, `commit` and `rollback` are
    AuditUnitOfWork's."""

    @property
    def api_keys(self) -> ApiKeyRepository:
        """API keys (hashed), looked up by their public prefix."""
        ...

    @property
    def collections(self) -> CollectionsRepo:
        """Face collections (faceapi/domain/collections.py)."""
        ...

    @property
    def subjects(self) -> SubjectsRepo:
        """The subjects of collections."""
        ...

    @property
    def faces(self) -> FacesRepo:
        """Indexed faces with their descriptors."""
        ...

    @property
    def consents(self) -> ConsentsRepo:
        """Consent records of subjects."""
        ...

    @property
    def decisions(self) -> DecisionsRepo:
        """Decisions made under policies (faceapi/domain/decisions.py)."""
        ...

    @property
    def reviews(self) -> ReviewsRepo:
        """Human reviews of decisions, with their votes."""
        ...

    @property
    def lockouts(self) -> LockoutsRepo:
        """Failed-verify throttling state (faceapi/domain/lockout.py)."""
        ...

    @property
    def policy_versions(self) -> PolicyVersionsRepo:
        """Every policy version ever loaded, with its canonical text."""
        ...

    @property
    def idempotency(self) -> IdempotencyRepo:
        """Idempotency-Key records: the first answer to a request, by key."""
        ...

    @property
    def webhooks(self) -> WebhooksRepo:
        """Keys' webhooks and the outbox of callback deliveries."""
        ...

    @property
    def chips(self) -> FaceChipsRepo:
        """Kept face chips (sealed at rest), for re-embedding under a new model."""
        ...

    def __enter__(self) -> UnitOfWork:
        ...


# What the composition root hands to services: a fresh unit of work per use case call.
UnitOfWorkFactory = Callable[[], UnitOfWork]


# --- Erasure hooks -----------------------------------------------------------------------


@dataclass(frozen=True)
class ErasedData:
    """What one eraser deleted: counts by kind, and clean-ups to run after commit."""

    counts: Mapping[str, int] = field(default_factory=dict)
    after_commit: tuple[Callable[[], None], ...] = ()


class SubjectEraser(Protocol):
    """Deletes one subsystem's data about a subject inside the erasure's unit of work.

    `subject_id` None means every subject of the collection (the collection is being
    deleted). It must not commit; it must not raise for a subject it knows nothing of."""

    def __call__(self, uow: UnitOfWork, collection_id: str,
                 subject_id: str | None) -> ErasedData:
        ...


# --- Decisions and reviews ---------------------------------------------------------------


class DecisionsRepo(Protocol):
    def add(self, decision: Decision) -> None:
        """Insert a new decision. Raises AttestationReplayed (domain/liveness.py) when
        the decision consumes a liveness attestation another decision already consumed
        (a unique index: the race of two requests with one token)."""
        ...

    def liveness_jti_used(self, jti_sha256: str) -> bool:
        """Whether a decision already consumed the attestation with this digest."""
        ...

    def get(self, decision_id: str) -> Decision | None:
        """One decision, or None."""
        ...

    def update(self, decision: Decision) -> None:
        """Store a decision's final outcome, reasons, matched face and time."""
        ...

    def pseudonymise_subject(self, collection_id: str, subject_id: str | None) -> int:
        """Remove an erased subject's ids (None: every subject of the collection) from
        the collection's decisions: the subject, the matched face, and the candidates
        naming it (their face and subject ids become ""). Returns the rows changed."""
        ...

    def policy_names(self) -> list[str]:
        """Every policy name some stored decision was made under."""
        ...

    def delete_before(self, policy_name: str, before: datetime) -> int:
        """Delete the policy's decisions made before `before`, except those whose review
        still holds evidence (review retention purges it first). Returns the count."""
        ...


class LivenessVerifier(Protocol):
    """Checks a liveness attestation's signature against its issuer's configured key
    (faceapi/adapters/liveness.py); the claims are judged by the service."""

    def verify(self, token: str) -> Attestation:
        """The verified claims, or AttestationRejected (domain/liveness.py)."""
        ...


class ReviewsRepo(Protocol):
    def add(self, review: Review) -> None:
        """Insert a new pending review."""
        ...

    def get(self, review_id: str, *, for_update: bool = False) -> Review | None:
        """One review with its votes; for_update locks it until the transaction ends."""
        ...

    def add_vote(self, review_id: str, vote: ReviewVote) -> None:
        """Record one reviewer's vote (one per reviewer key, enforced by the store)."""
        ...

    def close(self, review: Review) -> None:
        """Store a review's end: status, closed and evidence-expiry times, flag."""
        ...

    def page(self, *, status: ReviewStatus | None, policy_name: str | None,
             created_before: datetime | None, collection_ids: Sequence[str] | None,
             policy_names: Sequence[str] | None = None, limit: int,
             after: str | None) -> list[Review]:
        """Reviews oldest first (keyset on created_at, id), without votes, within a
        reader's collections and policies (None: no limit; a limit on collections
        excludes reviews of no collection)."""
        ...

    def count_waiting(self, now: datetime, collection_ids: Sequence[str] | None,
                      policy_names: Sequence[str] | None = None) -> int:
        """Pending reviews not yet past their deadline (what a sweep would leave),
        within a reader's collections and policies."""
        ...

    def due_for_expiry(self, now: datetime, limit: int) -> list[Review]:
        """Pending reviews whose deadline has passed."""
        ...

    def evidence_due(self, now: datetime, limit: int) -> list[Review]:
        """Closed reviews whose evidence retention has ended and is not yet purged."""
        ...

    def mark_evidence_purged(self, review_id: str) -> None:
        """Record that a review's evidence blobs are gone."""
        ...

    def with_evidence_in(self, collection_id: str) -> list[Review]:
        """Reviews of a collection that are pending or still hold evidence."""
        ...

    def pseudonymise_subject(self, collection_id: str, subject_id: str | None) -> int:
        """Remove an erased subject's ids (None: every subject of the collection) from
        the collection's reviews: the review's subject, the candidates naming it (face
        and subject ids become ""), and votes' picked faces among those candidates.
        Returns the reviews changed."""
        ...


# --- Collections, subjects, faces, consents ----------------------------------------------


class CollectionsRepo(Protocol):
    def add(self, collection: Collection) -> None:
        """Insert a new collection; raises CollectionExists if the id is taken."""
        ...

    def get(self, collection_id: str) -> Collection | None:
        """One collection, or None."""
        ...

    def page(self, *, limit: int, after: str | None = None) -> list[Collection]:
        """Collections ordered by id, after the id `after` (keyset pagination)."""
        ...

    def stats(self, collection_id: str) -> CollectionStats:
        """Face and subject counts."""
        ...

    def bump_version(self, collection_id: str) -> int:
        """Add one to the collection's version (every face change does) and return it."""
        ...

    def delete(self, collection_id: str) -> None:
        """Delete the collection with its subjects, faces and consents."""
        ...

    def set_policies(self, collection_id: str, policies: Sequence[str]) -> None:
        """Replace the policies bound to the collection."""
        ...

    def set_model_version(self, collection_id: str, model_version: str) -> None:
        """Record the model version the collection's faces are now all computed with."""
        ...


class SubjectsRepo(Protocol):
    def get(self, collection_id: str, subject_id: str) -> Subject | None:
        """One subject, or None."""
        ...

    def ensure(self, subject: Subject) -> Subject:
        """Insert the subject unless it exists; return the stored one."""
        ...

    def delete(self, collection_id: str, subject_id: str) -> bool:
        """Delete the subject row; False if there was none."""
        ...

    def lock(self, collection_id: str, subject_id: str) -> bool:
        """Hold the subject's row until the transaction ends (a consent recorded or a
        face enrolled for it meanwhile waits); False if there is no such subject."""
        ...

    def ids(self, collection_id: str) -> list[str]:
        """Every subject id of a collection."""
        ...


class FacesRepo(Protocol):
    def add(self, face: StoredFace) -> None:
        """Insert one face."""
        ...

    def get(self, collection_id: str, face_id: str) -> StoredFace | None:
        """One face (with its embedding), or None."""
        ...

    def page(self, collection_id: str, *, subject_id: str | None = None, limit: int,
             after: str | None = None) -> list[StoredFace]:
        """Faces ordered by face id after `after`, without embeddings."""
        ...

    def list_for_subject(self, collection_id: str, subject_id: str) -> list[StoredFace]:
        """Every face of one subject, with embeddings (what verify compares against)."""
        ...

    def find_by_image(self, collection_id: str, image_sha256: str) -> list[StoredFace]:
        """Faces indexed from the image with this SHA-256 (imports resume with it)."""
        ...

    def delete(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        """Delete these faces; return the ids that existed and were deleted."""
        ...

    def delete_for_subject(self, collection_id: str, subject_id: str) -> list[str]:
        """Delete every face of a subject; return their ids."""
        ...

    def embeddings(self, collection_id: str,
                   template_version: str | None = None) -> list[tuple[str, str, bytes]]:
        """(face_id, subject_id, float32 bytes) for every face with an embedding (of
        that template version when one is given)."""
        ...

    def embeddings_since(self, collection_id: str, version: int,
                         template_version: str | None = None) -> list[tuple[str, str, bytes]]:
        """Like `embeddings`, for the faces added after collection version `version`."""
        ...

    def embedding_count(self, collection_id: str, template_version: str | None = None) -> int:
        """How many faces of the collection have an embedding (of that version)."""
        ...

    def template_counts(self, collection_id: str) -> dict[str, int]:
        """How many faces of the collection each template version has."""
        ...

    def not_at_template(self, collection_id: str, template_version: str, *,
                        after: str | None, limit: int) -> list[StoredFace]:
        """Faces (without embeddings) of another template version, by face id after
        `after`: what a reindex still has to do."""
        ...

    def set_template(self, collection_id: str, face_id: str, *, embedding: bytes,
                     template_version: str, from_version: str, added_version: int) -> bool:
        """Replace a face's descriptor and template version, only if it is still at
        `from_version` (a concurrent reindex did not get there first). `added_version`
        makes search indexes of the new template version fetch it as added."""
        ...

    def by_engine_face_ids(self, collection_id: str,
                           engine_face_ids: Sequence[str]) -> dict[str, StoredFace]:
        """Faces kept by a remote engine, by the engine's face id (without embeddings)."""
        ...

    def subject_face_ids(self, collection_id: str,
                         subject_id: str) -> list[tuple[str, str | None]]:
        """(face id, engine face id or None) of every face of a subject: what erasers
        need, without reading the embeddings."""
        ...

    def engine_face_ids(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        """The remote engine's face ids of these faces (those that have one)."""
        ...


class FaceChipsRepo(Protocol):
    """Face chips, sealed at rest by the store (never stored or read in the clear)."""

    def add(self, chip: FaceChip) -> None:
        """Keep one face's chip."""
        ...

    def get_many(self, collection_id: str, face_ids: Sequence[str]) -> dict[str, FaceChip]:
        """The kept chips of these faces (faces without one are absent)."""
        ...

    def delete(self, collection_id: str, face_ids: Sequence[str]) -> int:
        """Delete these faces' chips; return how many there were."""
        ...

    def delete_for_subject(self, collection_id: str, subject_id: str | None) -> int:
        """Delete a subject's chips (None: every chip of the collection)."""
        ...


class ConsentsRepo(Protocol):
    def record(self, consent: Consent) -> None:
        """Append a consent record for a subject (the latest one is in force)."""
        ...

    def current(self, collection_id: str, subject_id: str) -> Consent | None:
        """The latest consent record of a subject, or None."""
        ...

    def delete_for_subject(self, collection_id: str, subject_id: str) -> int:
        """Delete every consent record of a subject; return how many."""
        ...

    def lapsed_among(self, collection_id: str, subject_ids: Sequence[str],
                     now: datetime) -> set[str]:
        """Those of `subject_ids` whose consent in force (the newest record) has an
        `expires_at` at or before `now`, in one read (a search's candidates)."""
        ...

    def lapsed(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(collection id, subject id) of up to `limit` subjects whose consent in force
        has lapsed at `now`, oldest expiry first (what retention erases)."""
        ...


# --- Policy versions -------------------------------------------------------------------


class PolicyVersionsRepo(Protocol):
    """Every policy version ever loaded (`policy_versions`), kept for good."""

    def lock(self) -> None:
        """Hold the table's writer lock until the transaction ends, so workers starting
        at once record a new version once (the others then find it)."""
        ...

    def get(self, name: str, version: str) -> PolicyVersion | None:
        """One recorded version, or None."""
        ...

    def add(self, recorded: PolicyVersion) -> None:
        """Record a version (the primary key (name, version) refuses a second row)."""
        ...

    def versions_of(self, name: str) -> list[PolicyVersion]:
        """Every recorded version of a policy, oldest first."""
        ...


# --- Lockouts ----------------------------------------------------------------------------


class LockoutsRepo(Protocol):
    """Lockout state in the store (faceapi/adapters/store/decisions_repo.py; `uow.lockouts`)."""

    def get(self, key: LockoutKey) -> LockoutState | None:
        """The state of one key, or None."""
        ...

    def get_for_update(self, key: LockoutKey) -> LockoutState:
        """The state of one key, created if missing and locked until the transaction
        ends, so concurrent failures from several workers are all counted."""
        ...

    def save(self, state: LockoutState) -> None:
        """Write the state of one key (it exists: get_for_update made it)."""
        ...

    def delete(self, key: LockoutKey) -> bool:
        """Forget one key (a success or an unlock); False if there was nothing."""
        ...

    def delete_for_subject(self, collection_id: str, subject_id: str | None) -> int:
        """Forget every policy's state for one subject (None: every subject of the
        collection) on erasure; returns how many."""
        ...

    def for_subject(self, collection_id: str, subject_id: str) -> list[LockoutState]:
        """Every policy's state for one subject."""
        ...

    def for_subjects(self, collection_id: str,
                     subject_ids: Sequence[str]) -> list[LockoutState]:
        """Every policy's state for these subjects, in one read (a search's candidates)."""
        ...

    def policy_names(self) -> list[str]:
        """Every policy name some lockout state is kept under."""
        ...

    def delete_quiet(self, policy_name: str, before: datetime) -> int:
        """Delete the policy's states whose last failure and lock end are both before
        `before` (or unset): states a next failure would start afresh anyway. Returns
        the count."""
        ...


# --- Idempotency-Key records (services/idempotency.py) ----------------------------------


@dataclass(frozen=True)
class IdempotencyRecord:
    """One Idempotency-Key of one API key: a fingerprint of the request (never the
    request), who holds the claim (`claim_token`), and, once answered, the answer.

    state: `pending` (claimed, nothing committed), `committed` (the request's write
    committed in this row's transaction; the answer not saved yet), `done` (answer
    saved), `erased` (the answer was deleted with its collection's subject)."""

    key_id: str
    key: str
    fingerprint: str
    state: str
    claim_token: str
    created_at: datetime
    claimed_at: datetime
    collection_id: str | None = None
    status: int | None = None
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class IdempotencyRepo(Protocol):
    """Bookkeeping rows, not domain state: their writes need no audit event."""

    def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Insert `record` (state pending) unless a row holds its (key_id, key); then
        return that row, locked for the rest of the transaction."""
        ...

    def take_over(self, record: IdempotencyRecord, *, previous_token: str) -> bool:
        """Replace the row held by `previous_token` with `record` (an expired row or a
        dead claim); False when another request took it first."""
        ...

    def mark_committed(self, key_id: str, key: str, claim_token: str) -> bool:
        """pending -> committed, only while `claim_token` still holds the claim."""
        ...

    def save_response(self, key_id: str, key: str, claim_token: str, *, status: int,
                      body: str, headers: tuple[tuple[str, str], ...],
                      collection_id: str | None) -> bool:
        """committed -> done with the answer, only while `claim_token` holds it."""
        ...

    def release(self, key_id: str, key: str, claim_token: str) -> None:
        """Delete the row if `claim_token` still holds it (a refused request)."""
        ...

    def delete_before(self, moment: datetime) -> int:
        """Delete rows created before `moment`; how many."""
        ...

    def erase_collection(self, collection_id: str) -> int:
        """Drop the saved answers of a collection's rows (state erased); how many."""
        ...


# --- API keys ----------------------------------------------------------------------------


class ApiKeyRepository(Protocol):
    """The api_keys table inside one unit of work."""

    def add(self, key: ApiKey) -> None:
        """Insert a new key (its audit event is the service's job)."""
        ...

    def get(self, key_id: str) -> ApiKey | None:
        """One key by id (its public prefix), revoked or not."""
        ...

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first."""
        ...

    def count(self) -> int:
        """How many keys exist, revoked ones included."""
        ...

    def lock(self) -> None:
        """Hold the key table's writer lock until the transaction ends, so two first
        starts cannot both see an empty table and both create an admin key."""
        ...

    def revoke(self, key_id: str, at: datetime) -> None:
        """Mark a key revoked at `at`."""
        ...

    def touch(self, key_id: str, at: datetime) -> None:
        """Record the last use. Bookkeeping, not a change: no audit event needed."""
        ...

    def set_sigv4_secret(self, key_id: str, secret: str) -> None:
        """Keep the key's SigV4 secret access key, sealed with the server key (never in
        clear, never hashed-only: verifying a signature needs the secret itself)."""
        ...

    def sigv4_secret(self, key_id: str) -> str | None:
        """The key's SigV4 secret in clear, or None (keys made before revision 0009)."""
        ...


# --- Blob store (adapters/blobs.py) ------------------------------------------------------


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any previous blob."""
        ...

    def get(self, key: str) -> bytes | None:
        """The blob, or None if there is none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether there is a blob under `key` (without reading it)."""
        ...

    def delete(self, key: str) -> bool:
        """Delete one blob; False if there was none."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under `prefix/`; returns how many files went."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix/`."""
        ...


# --- Search index (adapters/search/) -----------------------------------------------------


class SearchHit(NamedTuple):
    face_id: str
    subject_id: str
    similarity: float


class SearchIndex(Protocol):
    """Nearest stored faces of a collection; always current with the store."""

    def search(self, collection_id: str, embedding: Sequence[float], *, threshold: float,
               max_faces: int, template_version: str | None = None) -> list[SearchHit]:
        """Up to `max_faces` faces with similarity >= threshold, best first; only faces
        of `template_version` when one is given (the probe's: like with like).

        Raises NotFound for an unknown collection."""
        ...

    def invalidate(self, collection_id: str) -> None:
        """Forget this process's copy of a collection (the next search rebuilds it)."""
        ...


# --- Secret files (adapters/private_files.py) --------------------------------------------


class SecretFileWriter(Protocol):
    """Files only this service's user may read (the bootstrap admin key)."""

    def write(self, path: Path, data: bytes) -> None:
        """Write (or replace) `path` atomically with mode 0600."""
        ...

    def remove(self, path: Path) -> None:
        """Delete `path` if it exists."""
        ...


# --- Image intake (adapters/images.py) ---------------------------------------------------


class ImageDecoder(Protocol):
    """Image intake with this process's limits bound at construction."""

    def decode(self, data: bytes) -> DecodedImage:
        """Validate and decode `data` into RGB pixels (EXIF orientation applied); raises
        ImageTooLarge, ImageTooManyPixels, UnsupportedImageFormat or InvalidImage."""
        ...


# --- Face engines (adapters/engines/) ----------------------------------------------------


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

    @property
    def template_version(self) -> str:
        """What a descriptor depends on (the recogniser, its input chip, jitter; not
        the detector): descriptors are comparable only within one template version."""
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

    def fused_similarity(self, probe: tuple[float, ...],
                         templates: Sequence[tuple[float, ...]]) -> float:
        """Similarity of a probe to one template fused from several descriptors of one
        person (equal to `similarity` for a single one)."""
        ...

    def ready(self) -> tuple[bool, str]:
        """Whether the engine can serve requests now, and why not."""
        ...


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


@runtime_checkable
class ChipEmbedder(Protocol):
    """Engines whose descriptors are computed from an aligned face chip they hand out
    (EmbeddedFace.chip): a kept chip can be re-embedded without the original image."""

    @property
    def chip_format(self) -> str:
        """The chips this engine cuts and takes (size, padding, alignment)."""
        ...

    def embed_chips(self, chips: Sequence[bytes]) -> list[tuple[float, ...]]:
        """One descriptor per chip, at this engine's template version."""
        ...


def chip_embedder(engine: FaceEngine) -> ChipEmbedder | None:
    """The engine itself when it can re-embed kept chips, else None."""
    return engine if isinstance(engine, ChipEmbedder) else None


def remote_collections(engine: FaceEngine) -> FaceCollections | None:
    """The engine itself when it keeps collections' faces remotely (Rekognition): the
    collection services then index, search and delete through this port and keep only
    ids, boxes and subjects in our store. None when descriptors live in our store."""
    return engine if isinstance(engine, FaceCollections) else None


# --- Metrics ---------------------------------------------------------------------------

@runtime_checkable
class Metrics(Protocol):
    """Counters and timings for operators (Prometheus in adapters/metrics.py). Labels are
    names of routes, stages, policies and outcomes only: never an image, a descriptor,
    a subject or a key."""

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request answered (route is the URL rule, never the raw path)."""
        ...

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Time spent in one engine stage: decode, detect, embed, compare or search."""
        ...

    def count_decision(self, kind: str, policy: str, outcome: str) -> None:
        """A decision was taken (its first outcome, pending_review included)."""
        ...

    def count_rate_limited(self, route: str) -> None:
        """A request refused by a rate limit (429)."""
        ...


class NullMetrics:
    """Metrics that go nowhere (FACEAPI_METRICS_ENABLED=false, tests that want none)."""

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        return None

    def observe_stage(self, stage: str, seconds: float) -> None:
        return None

    def count_decision(self, kind: str, policy: str, outcome: str) -> None:
        return None

    def count_rate_limited(self, route: str) -> None:
        return None


# --- Policy files rewritten by `faceapi calibrate` (adapters/policy_threshold.py) ----------


@dataclass(frozen=True)
class PolicyChange:
    """A policy file's min_similarity rewritten: the versions before and after."""

    name: str
    old_version: str
    new_version: str
    old_threshold: float
    new_threshold: float
    canonical_text: str  # of the new version, kept in policy_versions


class PolicyThresholdWriter(Protocol):
    """Rewrite one policy file's `min_similarity` (validated by the policy loader,
    written atomically) and put the previous bytes back."""

    def write(self, name: str, threshold: float, note: str) -> tuple[PolicyChange, bytes]:
        """Validate and write; the change made and the file's previous bytes."""
        ...

    def restore(self, name: str, previous: bytes) -> None:
        """Put the previous bytes back, atomically."""
        ...


# --- Review callbacks (faceapi/services/webhooks.py) -------------------------------------


class WebhooksRepo(Protocol):
    def put(self, webhook: Webhook, secret: str) -> None:
        """Insert or replace a key's webhook; the secret is stored sealed."""
        ...

    def get(self, key_id: str) -> Webhook | None:
        """A key's webhook, or None."""
        ...

    def secret(self, key_id: str) -> str | None:
        """A key's signing secret in clear (None: no webhook, or it does not open)."""
        ...

    def delete(self, key_id: str) -> bool:
        """Remove a key's webhook; False if it had none."""
        ...

    def enqueue(self, delivery: Delivery) -> bool:
        """Add an outbox row unless one exists for the decision and key (False then)."""
        ...

    def due(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending deliveries whose next attempt is due and whose lease (if any) ran out,
        oldest first."""
        ...

    def claim(self, delivery_id: str, now: datetime, lease_until: datetime) -> bool:
        """Lease one due delivery and count the attempt; False when another worker holds
        it or it is no longer pending (a compare-and-set: one winner)."""
        ...

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        ...

    def finish(self, delivery: Delivery) -> bool:
        """Store an attempt's result: status, next attempt, last status code and error;
        the lease is released. Only while `delivery.lease_until` is still the row's
        lease: False (nothing written) when it ran out and another worker claimed it."""
        ...

    def deliveries(self, key_id: str, *, limit: int, before: str | None = None,
                   status: DeliveryStatus | None = None) -> list[Delivery]:
        """A key's deliveries, newest first (keyset on created_at, id: `before` is the
        last id of the previous page)."""
        ...


@dataclass(frozen=True)
class SendResult:
    """What one HTTP attempt came to: the status code when the receiver answered, else
    a short error code (`timeout`, `connect_failed`, `address_not_allowed`, ...)."""

    status_code: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender(Protocol):
    """POSTs one signed body (faceapi/adapters/webhook_sender.py): resolves the host,
    refuses disallowed addresses, follows no redirect, bounded time and response size."""

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        ...

"""An in-memory store for unit tests: `FakeStore` holds committed state and hands out
`FakeStoreUnitOfWork`s whose repositories implement every repository port of
faceapi/services/ports.py, with the SQL implementations' semantics
(faceapi/adapters/store/*_repo.py, uow.py):

- `with uow:` works on a private copy of the committed state; `commit()` publishes it
  with the block's audit events, leaving the block without commit discards both;
- `commit()` refuses a change without an audit event (`unaudited_change`, then rolls
  back), like SqlAlchemyUnitOfWork; `api_keys.touch` and `api_keys.lock` are exempt;
- the same orderings, filters and return values as the SQL repositories.

tests/contract/ runs one set of repository tests over this and over the SQL store, so
the two cannot drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType

from faceapi.domain.access import ApiKey
from faceapi.domain.collections import (
    Collection,
    CollectionExists,
    CollectionStats,
    Consent,
    FaceChip,
    StoredFace,
    Subject,
)
from faceapi.domain.decisions import (
    AlreadyVoted,
    Decision,
    Review,
    ReviewStatus,
    ReviewVote,
    pseudonymised,
)
from faceapi.domain.errors import FaceApiError, NotFound
from faceapi.domain.liveness import AttestationReplayed, LivenessStatus
from faceapi.domain.lockout import LockoutKey, LockoutState
from faceapi.domain.policies import PolicyVersion
from faceapi.domain.webhooks import Delivery, DeliveryStatus, Webhook
from faceapi.services.ports import IdempotencyRecord, SearchHit
from tests.fakes_audit import FakeAuditLog


class FakeUnauditedChange(FaceApiError):
    """The fake's twin of adapters/store/uow.py's UnauditedChange (same code)."""

    code = "unaudited_change"


@dataclass
class StoreState:
    """Every table of the store, as plain dicts of domain objects."""

    collections: dict[str, Collection] = field(default_factory=dict)
    subjects: dict[tuple[str, str], Subject] = field(default_factory=dict)
    faces: dict[tuple[str, str], StoredFace] = field(default_factory=dict)
    consents: list[Consent] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)
    reviews: dict[str, Review] = field(default_factory=dict)
    votes: dict[str, list[ReviewVote]] = field(default_factory=dict)
    lockouts: dict[LockoutKey, LockoutState] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    sigv4_secrets: dict[str, str] = field(default_factory=dict)
    policy_versions: dict[tuple[str, str], PolicyVersion] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)
    webhooks: dict[str, tuple[Webhook, str]] = field(default_factory=dict)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    chips: dict[tuple[str, str], FaceChip] = field(default_factory=dict)


class _Repo:
    def __init__(self, uow: FakeStoreUnitOfWork) -> None:
        self._uow = uow

    @property
    def _s(self) -> StoreState:
        return self._uow.state

    def _changed(self, table: str) -> None:
        self._uow.changed_tables.add(table)


def _no_embedding(face: StoredFace) -> StoredFace:
    return replace(face, embedding=None)


class FakeCollectionsRepo(_Repo):
    def add(self, collection: Collection) -> None:
        if collection.collection_id in self._s.collections:
            raise CollectionExists(f"collection {collection.collection_id!r} already exists",
                                   details={"collection_id": collection.collection_id})
        self._changed("collections")
        self._s.collections[collection.collection_id] = replace(
            collection, policies=tuple(sorted(set(collection.policies))))

    def get(self, collection_id: str) -> Collection | None:
        return self._s.collections.get(collection_id)

    def page(self, *, limit: int, after: str | None = None) -> list[Collection]:
        ids = sorted(i for i in self._s.collections if after is None or i > after)
        return [self._s.collections[i] for i in ids[:limit]]

    def stats(self, collection_id: str) -> CollectionStats:
        return CollectionStats(
            face_count=sum(1 for c, _ in self._s.faces if c == collection_id),
            subject_count=sum(1 for c, _ in self._s.subjects if c == collection_id))

    def bump_version(self, collection_id: str) -> int:
        self._changed("collections")
        collection = self._s.collections[collection_id]  # SQL: NoResultFound
        self._s.collections[collection_id] = replace(collection,
                                                     version=collection.version + 1)
        return collection.version + 1

    def delete(self, collection_id: str) -> None:
        self._changed("collections")
        s = self._s
        s.consents = [c for c in s.consents if c.collection_id != collection_id]
        s.faces = {k: f for k, f in s.faces.items() if k[0] != collection_id}
        s.chips = {k: c for k, c in s.chips.items() if k[0] != collection_id}
        s.subjects = {k: v for k, v in s.subjects.items() if k[0] != collection_id}
        s.collections.pop(collection_id, None)

    def set_model_version(self, collection_id: str, model_version: str) -> None:
        self._changed("collections")
        collection = self._s.collections.get(collection_id)
        if collection is not None:
            self._s.collections[collection_id] = replace(collection,
                                                         model_version=model_version)

    def set_policies(self, collection_id: str, policies: Sequence[str]) -> None:
        self._changed("collections")
        collection = self._s.collections.get(collection_id)
        if collection is not None:
            self._s.collections[collection_id] = replace(
                collection, policies=tuple(sorted(set(policies))))


class FakeSubjectsRepo(_Repo):
    def get(self, collection_id: str, subject_id: str) -> Subject | None:
        return self._s.subjects.get((collection_id, subject_id))

    def ensure(self, subject: Subject) -> Subject:
        existing = self.get(subject.collection_id, subject.subject_id)
        if existing is not None:
            return existing
        self._changed("subjects")
        self._s.subjects[(subject.collection_id, subject.subject_id)] = subject
        return subject

    def delete(self, collection_id: str, subject_id: str) -> bool:
        self._changed("subjects")
        return self._s.subjects.pop((collection_id, subject_id), None) is not None

    def lock(self, collection_id: str, subject_id: str) -> bool:
        # Nothing to lock: one process, one thread.
        return (collection_id, subject_id) in self._s.subjects

    def ids(self, collection_id: str) -> list[str]:
        return sorted(s for c, s in self._s.subjects if c == collection_id)


class FakeFacesRepo(_Repo):
    def _of(self, collection_id: str) -> list[StoredFace]:
        return sorted((f for (c, _), f in self._s.faces.items() if c == collection_id),
                      key=lambda f: f.face_id)

    def add(self, face: StoredFace) -> None:
        self._changed("faces")
        key = (face.collection_id, face.face_id)
        if key in self._s.faces:
            raise ValueError(f"duplicate face {key}")  # SQL: IntegrityError
        self._s.faces[key] = face

    def get(self, collection_id: str, face_id: str) -> StoredFace | None:
        return self._s.faces.get((collection_id, face_id))

    def page(self, collection_id: str, *, subject_id: str | None = None, limit: int,
             after: str | None = None) -> list[StoredFace]:
        found = [_no_embedding(f) for f in self._of(collection_id)
                 if (subject_id is None or f.subject_id == subject_id)
                 and (after is None or f.face_id > after)]
        return found[:limit]

    def list_for_subject(self, collection_id: str, subject_id: str) -> list[StoredFace]:
        return sorted((f for f in self._of(collection_id) if f.subject_id == subject_id),
                      key=lambda f: (f.created_at, f.face_id))

    def find_by_image(self, collection_id: str, image_sha256: str) -> list[StoredFace]:
        return [_no_embedding(f) for f in self._of(collection_id)
                if f.image_sha256 == image_sha256]

    def delete(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        if not face_ids:
            return []
        found = [f.face_id for f in self._of(collection_id) if f.face_id in set(face_ids)]
        if found:
            self._changed("faces")
        for face_id in found:
            del self._s.faces[(collection_id, face_id)]
            self._s.chips.pop((collection_id, face_id), None)
        return found

    def delete_for_subject(self, collection_id: str, subject_id: str) -> list[str]:
        found = [f.face_id for f in self._of(collection_id) if f.subject_id == subject_id]
        if found:
            self._changed("faces")
        for face_id in found:
            del self._s.faces[(collection_id, face_id)]
            self._s.chips.pop((collection_id, face_id), None)
        return found

    def _embedded(self, collection_id: str, template_version: str | None) -> list[StoredFace]:
        return [f for f in self._of(collection_id) if f.embedding is not None
                and template_version in (None, f.template_version)]

    def embeddings(self, collection_id: str,
                   template_version: str | None = None) -> list[tuple[str, str, bytes]]:
        return [(f.face_id, f.subject_id, f.embedding)
                for f in self._embedded(collection_id, template_version)
                if f.embedding is not None]

    def embeddings_since(self, collection_id: str, version: int,
                         template_version: str | None = None) -> list[tuple[str, str, bytes]]:
        newer = sorted((f for f in self._embedded(collection_id, template_version)
                        if f.added_version > version),
                       key=lambda f: (f.added_version, f.face_id))
        return [(f.face_id, f.subject_id, f.embedding) for f in newer
                if f.embedding is not None]

    def embedding_count(self, collection_id: str, template_version: str | None = None) -> int:
        return len(self._embedded(collection_id, template_version))

    def template_counts(self, collection_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self._of(collection_id):
            counts[f.template_version] = counts.get(f.template_version, 0) + 1
        return counts

    def not_at_template(self, collection_id: str, template_version: str, *,
                        after: str | None, limit: int) -> list[StoredFace]:
        return [_no_embedding(f) for f in self._of(collection_id)
                if f.template_version != template_version
                and (after is None or f.face_id > after)][:limit]

    def set_template(self, collection_id: str, face_id: str, *, embedding: bytes,
                     template_version: str, from_version: str, added_version: int) -> bool:
        face = self._s.faces.get((collection_id, face_id))
        if face is None or face.template_version != from_version:
            return False
        self._changed("faces")
        self._s.faces[(collection_id, face_id)] = replace(
            face, embedding=embedding, template_version=template_version,
            added_version=added_version)
        return True

    def by_engine_face_ids(self, collection_id: str,
                           engine_face_ids: Sequence[str]) -> dict[str, StoredFace]:
        wanted = set(engine_face_ids)
        return {f.engine_face_id: _no_embedding(f) for f in self._of(collection_id)
                if f.engine_face_id is not None and f.engine_face_id in wanted}

    def subject_face_ids(self, collection_id: str,
                         subject_id: str) -> list[tuple[str, str | None]]:
        return [(f.face_id, f.engine_face_id) for f in self._of(collection_id)
                if f.subject_id == subject_id]

    def engine_face_ids(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        wanted = set(face_ids)
        return [f.engine_face_id for f in self._of(collection_id)
                if f.face_id in wanted and f.engine_face_id is not None]


class FakeFaceChipsRepo(_Repo):
    """Chips in the clear: sealing is the SQL store's (adapters/store/chips_repo.py)."""

    def add(self, chip: FaceChip) -> None:
        self._changed("face_chips")
        self._s.chips[(chip.collection_id, chip.face_id)] = chip

    def get_many(self, collection_id: str, face_ids: Sequence[str]) -> dict[str, FaceChip]:
        return {f: self._s.chips[(collection_id, f)] for f in face_ids
                if (collection_id, f) in self._s.chips}

    def delete(self, collection_id: str, face_ids: Sequence[str]) -> int:
        gone = [k for k in [(collection_id, f) for f in face_ids] if k in self._s.chips]
        if gone:
            self._changed("face_chips")
        for key in gone:
            del self._s.chips[key]
        return len(gone)

    def delete_for_subject(self, collection_id: str, subject_id: str | None) -> int:
        gone = [k for k, c in self._s.chips.items() if k[0] == collection_id
                and subject_id in (None, c.subject_id)]
        if gone:
            self._changed("face_chips")
        for key in gone:
            del self._s.chips[key]
        return len(gone)


class FakeConsentsRepo(_Repo):
    def record(self, consent: Consent) -> None:
        self._changed("consents")
        self._s.consents.append(consent)

    def current(self, collection_id: str, subject_id: str) -> Consent | None:
        return next((c for c in reversed(self._s.consents)
                     if (c.collection_id, c.subject_id) == (collection_id, subject_id)), None)

    def delete_for_subject(self, collection_id: str, subject_id: str) -> int:
        self._changed("consents")
        kept = [c for c in self._s.consents
                if (c.collection_id, c.subject_id) != (collection_id, subject_id)]
        gone = len(self._s.consents) - len(kept)
        self._s.consents = kept
        return gone

    def _in_force(self) -> dict[tuple[str, str], Consent]:
        newest: dict[tuple[str, str], Consent] = {}
        for consent in self._s.consents:  # appended in order: the last one wins
            newest[(consent.collection_id, consent.subject_id)] = consent
        return newest

    def lapsed_among(self, collection_id: str, subject_ids: Sequence[str],
                     now: datetime) -> set[str]:
        wanted = set(subject_ids)
        return {s for (c, s), consent in self._in_force().items()
                if c == collection_id and s in wanted and consent.lapsed(now)}

    def lapsed(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        found = sorted((consent.expires_at, c, s) for (c, s), consent
                       in self._in_force().items()
                       if consent.lapsed(now) and consent.expires_at is not None)
        return [(c, s) for _, c, s in found[:limit]]


class FakeDecisionsRepo(_Repo):
    def add(self, decision: Decision) -> None:
        self._changed("decisions")
        if decision.id in self._s.decisions:
            raise ValueError(f"duplicate decision {decision.id}")  # SQL: IntegrityError
        jti = decision.liveness.jti_sha256
        if decision.liveness.status is LivenessStatus.ATTESTED and jti is not None and \
                self.liveness_jti_used(jti):
            raise AttestationReplayed(jti)  # SQL: the partial unique index
        self._s.decisions[decision.id] = decision

    def liveness_jti_used(self, jti_sha256: str) -> bool:
        return any(d.liveness.status is LivenessStatus.ATTESTED
                   and d.liveness.jti_sha256 == jti_sha256
                   for d in self._s.decisions.values())

    def get(self, decision_id: str) -> Decision | None:
        return self._s.decisions.get(decision_id)

    def update(self, decision: Decision) -> None:
        self._changed("decisions")
        stored = self._s.decisions.get(decision.id)
        if stored is not None:
            self._s.decisions[decision.id] = replace(
                stored, outcome=decision.outcome, reasons=tuple(decision.reasons),
                matched_face_id=decision.matched_face_id, decided_at=decision.decided_at)

    def pseudonymise_subject(self, collection_id: str, subject_id: str | None) -> int:
        changed = 0
        for decision in list(self._s.decisions.values()):
            if decision.collection_id != collection_id:
                continue
            candidates = pseudonymised(decision.candidates, subject_id)
            erased_faces = {c.face_id for c in decision.candidates} - {
                c.face_id for c in candidates}
            own = decision.subject_id is not None and (
                subject_id is None or decision.subject_id == subject_id)
            matched = None if decision.matched_face_id in erased_faces or own \
                else decision.matched_face_id
            new = replace(decision, subject_id=None if own else decision.subject_id,
                          matched_face_id=matched, candidates=candidates)
            if new != decision:
                self._changed("decisions")
                self._s.decisions[decision.id] = new
                changed += 1
        return changed

    def policy_names(self) -> list[str]:
        return sorted({d.policy_name for d in self._s.decisions.values()})

    def delete_before(self, policy_name: str, before: datetime) -> int:
        held = {r.id for r in self._s.reviews.values() if not r.evidence_purged}
        gone = [d for d in self._s.decisions.values()
                if d.policy_name == policy_name and d.created_at is not None
                and d.created_at < before and d.review_id not in held]
        for decision in gone:
            self._changed("decisions")
            del self._s.decisions[decision.id]
            # SQL: reviews.decision_id ON DELETE CASCADE, and votes with the review.
            for review in [r for r in self._s.reviews.values() if r.decision_id == decision.id]:
                del self._s.reviews[review.id]
                self._s.votes.pop(review.id, None)
        return len(gone)


def _in_scope(review: Review, collection_ids: Sequence[str] | None,
              policy_names: Sequence[str] | None) -> bool:
    # As SQL's IN: a review of no collection is outside every collection-limited scope.
    if collection_ids is not None and review.collection_id not in set(collection_ids):
        return False
    return policy_names is None or review.policy_name in set(policy_names)


class FakeReviewsRepo(_Repo):
    def add(self, review: Review) -> None:
        self._changed("reviews")
        if review.id in self._s.reviews:
            raise ValueError(f"duplicate review {review.id}")  # SQL: IntegrityError
        # The SQL repository stores votes only through add_vote.
        self._s.reviews[review.id] = replace(review, votes=())
        self._s.votes[review.id] = []

    def _all(self) -> list[Review]:
        return sorted(self._s.reviews.values(), key=lambda r: (r.created_at, r.id))

    def get(self, review_id: str, *, for_update: bool = False) -> Review | None:
        review = self._s.reviews.get(review_id)
        if review is None:
            return None
        votes = sorted(self._s.votes.get(review_id, []),
                       key=lambda v: (v.at, v.reviewer_key_id))
        return replace(review, votes=tuple(votes))

    def add_vote(self, review_id: str, vote: ReviewVote) -> None:
        votes = self._s.votes.setdefault(review_id, [])
        if any(v.reviewer_key_id == vote.reviewer_key_id for v in votes):
            raise AlreadyVoted("this reviewer has already decided this review")
        self._changed("review_votes")
        votes.append(vote)

    def close(self, review: Review) -> None:
        self._changed("reviews")
        stored = self._s.reviews.get(review.id)
        if stored is not None:
            self._s.reviews[review.id] = replace(
                stored, status=review.status, closed_at=review.closed_at,
                evidence_expires_at=review.evidence_expires_at,
                evidence_purged=review.evidence_purged, flagged=review.flagged)

    def page(self, *, status: ReviewStatus | None, policy_name: str | None,
             created_before: datetime | None, collection_ids: Sequence[str] | None,
             policy_names: Sequence[str] | None = None, limit: int,
             after: str | None) -> list[Review]:
        cursor = self._s.reviews.get(after) if after is not None else None
        found = [r for r in self._all()
                 if (status is None or r.status is status)
                 and (policy_name is None or r.policy_name == policy_name)
                 and (created_before is None or r.created_at < created_before)
                 and _in_scope(r, collection_ids, policy_names)
                 and (cursor is None or (r.created_at, r.id) > (cursor.created_at, cursor.id))]
        return found[:limit]

    def count_waiting(self, now: datetime, collection_ids: Sequence[str] | None,
                      policy_names: Sequence[str] | None = None) -> int:
        return sum(1 for r in self._all()
                   if r.status is ReviewStatus.PENDING and r.expires_at > now
                   and _in_scope(r, collection_ids, policy_names))

    def due_for_expiry(self, now: datetime, limit: int) -> list[Review]:
        due = [r for r in self._all()
               if r.status is ReviewStatus.PENDING and r.expires_at <= now]
        return sorted(due, key=lambda r: r.expires_at)[:limit]

    def evidence_due(self, now: datetime, limit: int) -> list[Review]:
        due = [r for r in self._all() if not r.evidence_purged
               and r.evidence_expires_at is not None and r.evidence_expires_at <= now]
        return sorted(due, key=lambda r: r.evidence_expires_at or now)[:limit]

    def mark_evidence_purged(self, review_id: str) -> None:
        self._changed("reviews")
        stored = self._s.reviews.get(review_id)
        if stored is not None:
            self._s.reviews[review_id] = replace(stored, evidence_purged=True)

    def with_evidence_in(self, collection_id: str) -> list[Review]:
        return [r for r in self._all() if r.collection_id == collection_id
                and (r.status is ReviewStatus.PENDING or not r.evidence_purged)]

    def pseudonymise_subject(self, collection_id: str, subject_id: str | None) -> int:
        changed = 0
        for review in self._all():
            if review.collection_id != collection_id:
                continue
            candidates = pseudonymised(review.candidates, subject_id)
            erased_faces = {c.face_id for c in review.candidates} - {
                c.face_id for c in candidates}
            own = review.subject_id is not None and (
                subject_id is None or review.subject_id == subject_id)
            new = replace(review, subject_id=None if own else review.subject_id,
                          candidates=candidates)
            if new == review:
                continue
            self._changed("reviews")
            self._s.reviews[review.id] = new
            self._s.votes[review.id] = [
                replace(v, face_id=None) if v.face_id in erased_faces else v
                for v in self._s.votes.get(review.id, [])]
            changed += 1
        return changed


class FakeLockoutsRepo(_Repo):
    def get(self, key: LockoutKey) -> LockoutState | None:
        return self._s.lockouts.get(key)

    def get_for_update(self, key: LockoutKey) -> LockoutState:
        self._changed("lockouts")  # SQL: an INSERT ... ON CONFLICT DO NOTHING
        return self._s.lockouts.setdefault(key, LockoutState(key=key))

    def save(self, state: LockoutState) -> None:
        self._changed("lockouts")
        if state.key in self._s.lockouts:  # SQL: an UPDATE of the existing row
            self._s.lockouts[state.key] = state

    def delete(self, key: LockoutKey) -> bool:
        self._changed("lockouts")
        return self._s.lockouts.pop(key, None) is not None

    def delete_for_subject(self, collection_id: str, subject_id: str | None) -> int:
        self._changed("lockouts")
        gone = [k for k in self._s.lockouts if k.collection_id == collection_id
                and (subject_id is None or k.subject_id == subject_id)]
        for key in gone:
            del self._s.lockouts[key]
        return len(gone)

    def for_subject(self, collection_id: str, subject_id: str) -> list[LockoutState]:
        return [s for k, s in self._s.lockouts.items()
                if (k.collection_id, k.subject_id) == (collection_id, subject_id)]

    def for_subjects(self, collection_id: str,
                     subject_ids: Sequence[str]) -> list[LockoutState]:
        wanted = set(subject_ids)
        return [s for k, s in self._s.lockouts.items()
                if k.collection_id == collection_id and k.subject_id in wanted]

    def policy_names(self) -> list[str]:
        return sorted({k.policy_name for k in self._s.lockouts})

    def delete_quiet(self, policy_name: str, before: datetime) -> int:
        gone = [k for k, state in self._s.lockouts.items() if k.policy_name == policy_name
                and all(m is None or m < before
                        for m in (state.last_failure_at, state.locked_until))]
        if gone:
            self._changed("lockouts")
        for key in gone:
            del self._s.lockouts[key]
        return len(gone)


class FakePolicyVersionsRepo(_Repo):
    def lock(self) -> None:
        """Nothing to lock: one process, one thread."""

    def get(self, name: str, version: str) -> PolicyVersion | None:
        return self._s.policy_versions.get((name, version))

    def add(self, recorded: PolicyVersion) -> None:
        key = (recorded.name, recorded.version)
        if key in self._s.policy_versions:
            raise ValueError(f"duplicate policy version {key}")  # SQL: IntegrityError
        self._changed("policy_versions")
        self._s.policy_versions[key] = recorded

    def versions_of(self, name: str) -> list[PolicyVersion]:
        return sorted((v for v in self._s.policy_versions.values() if v.name == name),
                      key=lambda v: (v.first_loaded_at, v.version))


class FakeApiKeyRepository(_Repo):
    def add(self, key: ApiKey) -> None:
        self._changed("api_keys")
        if key.id in self._s.api_keys:
            raise ValueError(f"duplicate key {key.id}")  # SQL: IntegrityError
        self._s.api_keys[key.id] = key

    def get(self, key_id: str) -> ApiKey | None:
        return self._s.api_keys.get(key_id)

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        keys = sorted(self._s.api_keys.values(), key=lambda k: (k.created_at, k.id))
        return [k for k in keys if include_revoked or k.revoked_at is None]

    def count(self) -> int:
        return len(self._s.api_keys)

    def lock(self) -> None:
        """Nothing to lock: one process, one thread."""

    def revoke(self, key_id: str, at: datetime) -> None:
        self._changed("api_keys")
        key = self._s.api_keys.get(key_id)
        if key is not None and key.revoked_at is None:
            self._s.api_keys[key_id] = replace(key, revoked_at=at)

    def touch(self, key_id: str, at: datetime) -> None:
        # Bookkeeping, exempt from the audit rule like the SQL repository's UNAUDITED.
        key = self._s.api_keys.get(key_id)
        if key is not None:
            self._s.api_keys[key_id] = replace(key, last_used_at=at)

    def set_sigv4_secret(self, key_id: str, secret: str) -> None:
        self._changed("api_keys")
        if key_id in self._s.api_keys:
            self._s.sigv4_secrets[key_id] = secret

    def sigv4_secret(self, key_id: str) -> str | None:
        return self._s.sigv4_secrets.get(key_id)


class FakeIdempotencyRepo(_Repo):
    """Bookkeeping rows: no table change is recorded (the SQL repo's are unaudited)."""

    def _held(self, key_id: str, key: str, token: str) -> IdempotencyRecord | None:
        record = self._s.idempotency.get((key_id, key))
        return record if record is not None and record.claim_token == token else None

    def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        found = self._s.idempotency.get((record.key_id, record.key))
        if found is None:
            self._s.idempotency[(record.key_id, record.key)] = record
        return found

    def take_over(self, record: IdempotencyRecord, *, previous_token: str) -> bool:
        if self._held(record.key_id, record.key, previous_token) is None:
            return False
        self._s.idempotency[(record.key_id, record.key)] = record
        return True

    def mark_committed(self, key_id: str, key: str, claim_token: str) -> bool:
        record = self._held(key_id, key, claim_token)
        if record is None or record.state != "pending":
            return False
        self._s.idempotency[(key_id, key)] = replace(record, state="committed")
        return True

    def save_response(self, key_id: str, key: str, claim_token: str, *, status: int,
                      body: str, headers: tuple[tuple[str, str], ...],
                      collection_id: str | None) -> bool:
        record = self._held(key_id, key, claim_token)
        if record is None or record.state != "committed":
            return False
        self._s.idempotency[(key_id, key)] = replace(
            record, state="done", status=status, body=body, headers=headers,
            collection_id=collection_id or record.collection_id)
        return True

    def release(self, key_id: str, key: str, claim_token: str) -> None:
        if self._held(key_id, key, claim_token) is not None:
            del self._s.idempotency[(key_id, key)]

    def delete_before(self, moment: datetime) -> int:
        old = [k for k, r in self._s.idempotency.items() if r.created_at < moment]
        for k in old:
            del self._s.idempotency[k]
        return len(old)

    def erase_collection(self, collection_id: str) -> int:
        hit = [k for k, r in self._s.idempotency.items()
               if r.collection_id == collection_id and r.state == "done"]
        for k in hit:
            self._s.idempotency[k] = replace(self._s.idempotency[k], state="erased",
                                             body=None, headers=())
        return len(hit)


class FakeWebhooksRepo(_Repo):
    """WebhooksRepo in memory (the SQL one: faceapi/adapters/store/webhooks_repo.py)."""

    def put(self, webhook: Webhook, secret: str) -> None:
        self._changed("webhooks")
        self._s.webhooks[webhook.key_id] = (webhook, secret)

    def get(self, key_id: str) -> Webhook | None:
        found = self._s.webhooks.get(key_id)
        return None if found is None else found[0]

    def secret(self, key_id: str) -> str | None:
        found = self._s.webhooks.get(key_id)
        return None if found is None else found[1]

    def delete(self, key_id: str) -> bool:
        self._changed("webhooks")
        return self._s.webhooks.pop(key_id, None) is not None

    def enqueue(self, delivery: Delivery) -> bool:
        if any(d.decision_id == delivery.decision_id and d.key_id == delivery.key_id
               for d in self._s.deliveries.values()):
            return False
        self._changed("webhook_deliveries")
        self._s.deliveries[delivery.id] = delivery
        return True

    def _due(self, d: Delivery, now: datetime) -> bool:
        return (d.status is DeliveryStatus.PENDING and d.next_attempt_at <= now
                and (d.lease_until is None or d.lease_until <= now))

    def due(self, now: datetime, limit: int) -> list[Delivery]:
        found = [d for d in self._s.deliveries.values() if self._due(d, now)]
        return sorted(found, key=lambda d: (d.next_attempt_at, d.id))[:limit]

    def claim(self, delivery_id: str, now: datetime, lease_until: datetime) -> bool:
        d = self._s.deliveries.get(delivery_id)
        if d is None or not self._due(d, now):
            return False
        self._s.deliveries[delivery_id] = replace(d, lease_until=lease_until,
                                                  attempts=d.attempts + 1,
                                                  last_attempt_at=now)
        return True

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        return self._s.deliveries.get(delivery_id)

    def finish(self, delivery: Delivery) -> bool:
        stored = self._s.deliveries.get(delivery.id)
        if stored is None or stored.lease_until != delivery.lease_until:
            return False
        self._changed("webhook_deliveries")
        self._s.deliveries[delivery.id] = replace(delivery, lease_until=None)
        return True

    def deliveries(self, key_id: str, *, limit: int, before: str | None = None,
                   status: DeliveryStatus | None = None) -> list[Delivery]:
        found = sorted((d for d in self._s.deliveries.values() if d.key_id == key_id
                        and (status is None or d.status is status)),
                       key=lambda d: (d.created_at, d.id), reverse=True)
        if before is not None:
            ids = [d.id for d in found]
            found = found[ids.index(before) + 1:] if before in ids else []
        return found[:limit]


class FakeStoreUnitOfWork:
    """One transaction over a FakeStore (the UnitOfWork port)."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self._state: StoreState | None = None
        self.changed_tables: set[str] = set()
        self.commits = 0

    @property
    def state(self) -> StoreState:
        if self._state is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._state

    def __enter__(self) -> FakeStoreUnitOfWork:
        if self._state is not None:
            raise RuntimeError("unit of work already open")
        self._begin()
        return self

    def _begin(self) -> None:
        self._state = copy.deepcopy(self._store.state)
        self.changed_tables = set()
        self._store.audit.pending = []

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._state = None
        self.changed_tables = set()
        self._store.audit.pending = []

    @property
    def audit(self) -> FakeAuditLog:
        self.state  # noqa: B018 - only inside the block, like the SQL unit of work
        return self._store.audit

    def commit(self) -> None:
        state = self.state
        if self.changed_tables and not self._store.audit.pending:
            tables = ", ".join(sorted(self.changed_tables))
            self.rollback()
            raise FakeUnauditedChange(
                f"refusing to commit changes to {tables} without an audit event")
        self._store.state = state
        self._store.audit.committed += self._store.audit.pending
        self.commits += 1
        self._store.commits += 1
        self._begin()

    def rollback(self) -> None:
        self.state  # noqa: B018
        self._begin()

    @property
    def api_keys(self) -> FakeApiKeyRepository:
        return FakeApiKeyRepository(self)

    @property
    def collections(self) -> FakeCollectionsRepo:
        return FakeCollectionsRepo(self)

    @property
    def chips(self) -> FakeFaceChipsRepo:
        return FakeFaceChipsRepo(self)

    @property
    def subjects(self) -> FakeSubjectsRepo:
        return FakeSubjectsRepo(self)

    @property
    def faces(self) -> FakeFacesRepo:
        return FakeFacesRepo(self)

    @property
    def consents(self) -> FakeConsentsRepo:
        return FakeConsentsRepo(self)

    @property
    def decisions(self) -> FakeDecisionsRepo:
        return FakeDecisionsRepo(self)

    @property
    def reviews(self) -> FakeReviewsRepo:
        return FakeReviewsRepo(self)

    @property
    def idempotency(self) -> FakeIdempotencyRepo:
        return FakeIdempotencyRepo(self)

    @property
    def lockouts(self) -> FakeLockoutsRepo:
        return FakeLockoutsRepo(self)

    @property
    def policy_versions(self) -> FakePolicyVersionsRepo:
        return FakePolicyVersionsRepo(self)

    @property
    def webhooks(self) -> FakeWebhooksRepo:
        return FakeWebhooksRepo(self)


@dataclass
class FakeStore:
    """Committed state plus the audit trail; `uow()` is the UnitOfWorkFactory."""

    state: StoreState = field(default_factory=StoreState)
    audit: FakeAuditLog = field(default_factory=FakeAuditLog)
    commits: int = 0

    def uow(self) -> FakeStoreUnitOfWork:
        return FakeStoreUnitOfWork(self)

    @property
    def actions(self) -> list[str]:
        """The committed audit actions, oldest first."""
        return self.audit.actions


@dataclass
class FakeSearchIndex:
    """The SearchIndex port by brute force over a FakeStore's committed faces."""

    store: FakeStore
    similarity: Callable[[tuple[float, ...], tuple[float, ...]], float]
    invalidated: list[str] = field(default_factory=list)

    def search(self, collection_id: str, embedding: Sequence[float], *, threshold: float,
               max_faces: int, template_version: str | None = None) -> list[SearchHit]:
        if collection_id not in self.store.state.collections:
            raise NotFound(f"collection {collection_id} not found")
        probe = tuple(embedding)
        hits = [SearchHit(f.face_id, f.subject_id, self.similarity(probe, f.vector()))
                for (c, _), f in sorted(self.store.state.faces.items())
                if c == collection_id and f.embedding is not None
                and template_version in (None, f.template_version)]
        hits = [h for h in hits if h.similarity >= threshold]
        return sorted(hits, key=lambda h: (-h.similarity, h.face_id))[:max_faces]

    def invalidate(self, collection_id: str) -> None:
        self.invalidated.append(collection_id)

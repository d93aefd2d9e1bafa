"""Decisions, reviews (with votes) and lockout state in SQL, on the unit of work's
connection; the unit of work commits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from faceapi.adapters.store.tables import decisions, lockouts, review_votes, reviews
from faceapi.domain.decisions import (
    AlreadyVoted,
    Candidate,
    Decision,
    DecisionKind,
    Outcome,
    Review,
    ReviewStatus,
    ReviewVote,
    Vote,
    pseudonymised,
)
from faceapi.domain.liveness import (
    AttestationReplayed,
    LivenessCheck,
    LivenessFailure,
    LivenessStatus,
)
from faceapi.domain.lockout import LockoutKey, LockoutState


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; we only ever store UTC.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _must_utc(moment: datetime) -> datetime:
    value = _utc(moment)
    assert value is not None
    return value


def _dump_candidates(candidates: Sequence[Candidate]) -> str:
    return json.dumps([{"face_id": c.face_id, "subject_id": c.subject_id,
                        "similarity": c.similarity} for c in candidates],
                      sort_keys=True, separators=(",", ":"))


def _load_candidates(text: str) -> tuple[Candidate, ...]:
    return tuple(Candidate(face_id=c["face_id"], subject_id=c["subject_id"],
                           similarity=float(c["similarity"])) for c in json.loads(text))


_FAILURES = {f.value: f for f in LivenessFailure}


def _liveness(row: Row[Any]) -> LivenessCheck:
    reasons = json.loads(row.reasons)
    failure = next((_FAILURES[r] for r in reasons if r in _FAILURES), None)
    return LivenessCheck(LivenessStatus(row.liveness_status), issuer=row.liveness_issuer,
                         jti_sha256=row.liveness_jti_sha256, failure=failure)


def _decision(row: Row[Any]) -> Decision:
    return Decision(
        id=row.id, kind=DecisionKind(row.kind), outcome=Outcome(row.outcome),
        reasons=tuple(json.loads(row.reasons)), policy_name=row.policy_name,
        policy_version=row.policy_version, threshold=float(row.threshold),
        collection_id=row.collection_id, subject_id=row.subject_id,
        similarity=None if row.similarity is None else float(row.similarity),
        candidates=_load_candidates(row.candidates), matched_face_id=row.matched_face_id,
        review_id=row.review_id, requester_key_id=row.requester_key_id,
        requester_role=row.requester_role, probe_sha256=row.probe_sha256,
        audit_event_id=row.audit_event_id, request_id=row.request_id,
        created_at=_utc(row.created_at), decided_at=_utc(row.decided_at),
        engine=row.engine, model_version=row.model_version, liveness=_liveness(row))


class SqlDecisionsRepo:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, decision: Decision) -> None:
        try:
            self._insert(decision)
        except IntegrityError as exc:
            # The partial unique index on attested token ids: another decision consumed
            # this attestation first. The transaction is lost; the caller rolls back.
            if decision.liveness.status is LivenessStatus.ATTESTED and \
                    "liveness_jti" in str(exc.orig):
                raise AttestationReplayed(decision.liveness.jti_sha256 or "") from exc
            raise

    def liveness_jti_used(self, jti_sha256: str) -> bool:
        return self._conn.execute(select(decisions.c.id).where(
            decisions.c.liveness_jti_sha256 == jti_sha256,
            decisions.c.liveness_status == LivenessStatus.ATTESTED.value).limit(1)
        ).first() is not None

    def _insert(self, decision: Decision) -> None:
        liveness = decision.liveness
        self._conn.execute(insert(decisions).values(
            liveness_status=liveness.status.value, liveness_issuer=liveness.issuer,
            liveness_jti_sha256=liveness.jti_sha256,
            id=decision.id, kind=decision.kind.value, outcome=decision.outcome.value,
            reasons=json.dumps(list(decision.reasons)), policy_name=decision.policy_name,
            policy_version=decision.policy_version, threshold=decision.threshold,
            collection_id=decision.collection_id, subject_id=decision.subject_id,
            similarity=decision.similarity, candidates=_dump_candidates(decision.candidates),
            matched_face_id=decision.matched_face_id, review_id=decision.review_id,
            requester_key_id=decision.requester_key_id, requester_role=decision.requester_role,
            probe_sha256=decision.probe_sha256, audit_event_id=decision.audit_event_id,
            request_id=decision.request_id, engine=decision.engine,
            model_version=decision.model_version, created_at=decision.created_at,
            decided_at=decision.decided_at))

    def get(self, decision_id: str) -> Decision | None:
        row = self._conn.execute(select(decisions).where(decisions.c.id == decision_id)).first()
        return None if row is None else _decision(row)

    def update(self, decision: Decision) -> None:
        self._conn.execute(update(decisions).where(decisions.c.id == decision.id).values(
            outcome=decision.outcome.value, reasons=json.dumps(list(decision.reasons)),
            matched_face_id=decision.matched_face_id, decided_at=decision.decided_at))

    def pseudonymise_subject(self, collection_id: str, subject_id: str | None) -> int:
        changed = 0
        for row in _rows_naming(self._conn, decisions, collection_id, subject_id,
                                decisions.c.matched_face_id):
            old = _load_candidates(row.candidates)
            new = pseudonymised(old, subject_id)
            erased_faces = {c.face_id for c in old} - {c.face_id for c in new}
            own = row.subject_id is not None and (subject_id is None
                                                  or row.subject_id == subject_id)
            matched = None if row.matched_face_id in erased_faces or own \
                else row.matched_face_id
            if not own and matched == row.matched_face_id and new == old:
                continue
            self._conn.execute(update(decisions).where(decisions.c.id == row.id).values(
                subject_id=None if own else row.subject_id, matched_face_id=matched,
                candidates=_dump_candidates(new)))
            changed += 1
        return changed

    def policy_names(self) -> list[str]:
        return list(self._conn.execute(select(decisions.c.policy_name).distinct()).scalars())

    def delete_before(self, policy_name: str, before: datetime) -> int:
        evidence_held = select(reviews.c.id).where(reviews.c.evidence_purged.is_(False))
        stmt = delete(decisions).where(
            decisions.c.policy_name == policy_name, decisions.c.created_at < before,
            or_(decisions.c.review_id.is_(None), decisions.c.review_id.not_in(evidence_held)))
        return int(self._conn.execute(stmt).rowcount)


def _vote(row: Row[Any]) -> ReviewVote:
    return ReviewVote(reviewer_key_id=row.reviewer_key_id, reviewer_role=row.reviewer_role,
                      vote=Vote(row.vote), reason=row.reason, face_id=row.face_id,
                      at=_must_utc(row.created_at))


def _review(row: Row[Any], votes: tuple[ReviewVote, ...] = ()) -> Review:
    return Review(
        id=row.id, decision_id=row.decision_id, kind=DecisionKind(row.kind),
        policy_name=row.policy_name, policy_version=row.policy_version,
        collection_id=row.collection_id, subject_id=row.subject_id,
        requester_key_id=row.requester_key_id, required_reviewers=int(row.required_reviewers),
        status=ReviewStatus(row.status), created_at=_must_utc(row.created_at),
        expires_at=_must_utc(row.expires_at), retention_days=int(row.retention_days),
        candidates=_load_candidates(row.candidates), votes=votes,
        evidence=tuple(json.loads(row.evidence)), closed_at=_utc(row.closed_at),
        evidence_expires_at=_utc(row.evidence_expires_at),
        evidence_purged=bool(row.evidence_purged), flagged=bool(row.flagged))


def _scope_clauses(collection_ids: Sequence[str] | None,
                   policy_names: Sequence[str] | None) -> list[Any]:
    """A reader's scope (None: no limit). IN never matches NULL, so a compare review
    (no collection) stays out of every collection-limited listing."""
    clauses: list[Any] = []
    if collection_ids is not None:
        clauses.append(reviews.c.collection_id.in_(list(collection_ids)))
    if policy_names is not None:
        clauses.append(reviews.c.policy_name.in_(list(policy_names)))
    return clauses


class SqlReviewsRepo:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, review: Review) -> None:
        self._conn.execute(insert(reviews).values(
            id=review.id, decision_id=review.decision_id, kind=review.kind.value,
            policy_name=review.policy_name, policy_version=review.policy_version,
            collection_id=review.collection_id, subject_id=review.subject_id,
            requester_key_id=review.requester_key_id,
            required_reviewers=review.required_reviewers, status=review.status.value,
            created_at=review.created_at, expires_at=review.expires_at,
            retention_days=review.retention_days,
            candidates=_dump_candidates(review.candidates),
            evidence=json.dumps(list(review.evidence)), closed_at=review.closed_at,
            evidence_expires_at=review.evidence_expires_at,
            evidence_purged=review.evidence_purged, flagged=review.flagged))

    def get(self, review_id: str, *, for_update: bool = False) -> Review | None:
        stmt = select(reviews).where(reviews.c.id == review_id)
        if for_update and self._conn.dialect.name == "postgresql":
            # Two reviewers voting at once must see each other's vote; SQLite already
            # serialises writers with BEGIN IMMEDIATE.
            stmt = stmt.with_for_update()
        row = self._conn.execute(stmt).first()
        if row is None:
            return None
        votes = tuple(_vote(v) for v in self._conn.execute(
            select(review_votes).where(review_votes.c.review_id == review_id)
            .order_by(review_votes.c.created_at, review_votes.c.reviewer_key_id)))
        return _review(row, votes)

    def add_vote(self, review_id: str, vote: ReviewVote) -> None:
        try:
            with self._conn.begin_nested():
                self._conn.execute(insert(review_votes).values(
                    review_id=review_id, reviewer_key_id=vote.reviewer_key_id,
                    reviewer_role=vote.reviewer_role, vote=vote.vote.value,
                    reason=vote.reason, face_id=vote.face_id, created_at=vote.at))
        except IntegrityError as exc:
            raise AlreadyVoted("this reviewer has already decided this review") from exc

    def close(self, review: Review) -> None:
        self._conn.execute(update(reviews).where(reviews.c.id == review.id).values(
            status=review.status.value, closed_at=review.closed_at,
            evidence_expires_at=review.evidence_expires_at,
            evidence_purged=review.evidence_purged, flagged=review.flagged))

    def page(self, *, status: ReviewStatus | None, policy_name: str | None,
             created_before: datetime | None, collection_ids: Sequence[str] | None,
             policy_names: Sequence[str] | None = None, limit: int,
             after: str | None) -> list[Review]:
        stmt = select(reviews).order_by(reviews.c.created_at, reviews.c.id).limit(limit)
        if status is not None:
            stmt = stmt.where(reviews.c.status == status.value)
        if policy_name is not None:
            stmt = stmt.where(reviews.c.policy_name == policy_name)
        if created_before is not None:
            stmt = stmt.where(reviews.c.created_at < created_before)
        stmt = stmt.where(*_scope_clauses(collection_ids, policy_names))
        if after is not None:
            cursor = self._conn.execute(
                select(reviews.c.created_at).where(reviews.c.id == after)).scalar()
            if cursor is not None:
                stmt = stmt.where(or_(reviews.c.created_at > cursor,
                                      and_(reviews.c.created_at == cursor,
                                           reviews.c.id > after)))
        return [_review(row) for row in self._conn.execute(stmt)]

    def count_waiting(self, now: datetime, collection_ids: Sequence[str] | None,
                      policy_names: Sequence[str] | None = None) -> int:
        stmt = select(func.count()).select_from(reviews).where(
            reviews.c.status == ReviewStatus.PENDING.value, reviews.c.expires_at > now,
            *_scope_clauses(collection_ids, policy_names))
        return int(self._conn.execute(stmt).scalar_one())

    def due_for_expiry(self, now: datetime, limit: int) -> list[Review]:
        stmt = (select(reviews).where(reviews.c.status == ReviewStatus.PENDING.value,
                                      reviews.c.expires_at <= now)
                .order_by(reviews.c.expires_at).limit(limit))
        return [_review(row) for row in self._conn.execute(stmt)]

    def evidence_due(self, now: datetime, limit: int) -> list[Review]:
        stmt = (select(reviews).where(reviews.c.evidence_purged.is_(False),
                                      reviews.c.evidence_expires_at.is_not(None),
                                      reviews.c.evidence_expires_at <= now)
                .order_by(reviews.c.evidence_expires_at).limit(limit))
        return [_review(row) for row in self._conn.execute(stmt)]

    def mark_evidence_purged(self, review_id: str) -> None:
        self._conn.execute(update(reviews).where(reviews.c.id == review_id)
                           .values(evidence_purged=True))

    def with_evidence_in(self, collection_id: str) -> list[Review]:
        stmt = select(reviews).where(
            reviews.c.collection_id == collection_id,
            or_(reviews.c.status == ReviewStatus.PENDING.value,
                reviews.c.evidence_purged.is_(False)))
        return [_review(row) for row in self._conn.execute(stmt)]

    def pseudonymise_subject(self, collection_id: str, subject_id: str | None) -> int:
        changed = 0
        for row in _rows_naming(self._conn, reviews, collection_id, subject_id):
            old = _load_candidates(row.candidates)
            new = pseudonymised(old, subject_id)
            erased_faces = sorted({c.face_id for c in old} - {c.face_id for c in new})
            own = row.subject_id is not None and (subject_id is None
                                                  or row.subject_id == subject_id)
            if not own and new == old:
                continue
            self._conn.execute(update(reviews).where(reviews.c.id == row.id).values(
                subject_id=None if own else row.subject_id, candidates=_dump_candidates(new)))
            if erased_faces:
                # A vote that picked one of the erased faces keeps its vote, not the face.
                self._conn.execute(update(review_votes).where(
                    review_votes.c.review_id == row.id,
                    review_votes.c.face_id.in_(erased_faces)).values(face_id=None))
            changed += 1
        return changed


def _rows_naming(conn: Connection, table: Table, collection_id: str, subject_id: str | None,
                 *extra: Any) -> list[Row[Any]]:
    """The collection's decision or review rows that name the subject as the claimed
    subject or among the candidates (every row of the collection when `subject_id` is
    None: a collection's deletion): id, subject_id, candidates and `extra` columns."""
    stmt = select(table.c.id, table.c.subject_id, table.c.candidates, *extra).where(
        table.c.collection_id == collection_id)
    if subject_id is not None:
        # The candidates' JSON is written with sort_keys and no spaces (_dump_candidates).
        named = '"subject_id":' + json.dumps(subject_id)
        stmt = stmt.where(or_(table.c.subject_id == subject_id,
                              table.c.candidates.contains(named, autoescape=True)))
    return list(conn.execute(stmt).all())


def _key_clause(key: LockoutKey) -> Any:
    return and_(lockouts.c.collection_id == key.collection_id,
                lockouts.c.subject_id == key.subject_id,
                lockouts.c.policy_name == key.policy_name)


def _lockout(row: Row[Any]) -> LockoutState:
    return LockoutState(
        key=LockoutKey(row.collection_id, row.subject_id, row.policy_name),
        failures=int(row.failures), lock_count=int(row.lock_count),
        last_failure_at=_utc(row.last_failure_at), locked_until=_utc(row.locked_until))


class SqlLockoutsRepo:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, key: LockoutKey) -> LockoutState | None:
        row = self._conn.execute(select(lockouts).where(_key_clause(key))).first()
        return None if row is None else _lockout(row)

    def get_for_update(self, key: LockoutKey) -> LockoutState:
        values = {"collection_id": key.collection_id, "subject_id": key.subject_id,
                  "policy_name": key.policy_name, "failures": 0, "lock_count": 0}
        # Insert-if-missing that never fails when two workers race to create the row.
        dialect = self._conn.dialect.name
        if dialect == "postgresql":
            self._conn.execute(pg_insert(lockouts).values(**values).on_conflict_do_nothing())
        elif dialect == "sqlite":
            self._conn.execute(sqlite_insert(lockouts).values(**values).on_conflict_do_nothing())
        elif self.get(key) is None:
            self._conn.execute(insert(lockouts).values(**values))
        stmt = select(lockouts).where(_key_clause(key))
        if dialect == "postgresql":
            stmt = stmt.with_for_update()
        return _lockout(self._conn.execute(stmt).one())

    def save(self, state: LockoutState) -> None:
        self._conn.execute(update(lockouts).where(_key_clause(state.key)).values(
            failures=state.failures, lock_count=state.lock_count,
            last_failure_at=state.last_failure_at, locked_until=state.locked_until))

    def delete(self, key: LockoutKey) -> bool:
        return bool(self._conn.execute(delete(lockouts).where(_key_clause(key))).rowcount)

    def delete_for_subject(self, collection_id: str, subject_id: str | None) -> int:
        stmt = delete(lockouts).where(lockouts.c.collection_id == collection_id)
        if subject_id is not None:
            stmt = stmt.where(lockouts.c.subject_id == subject_id)
        return int(self._conn.execute(stmt).rowcount)

    def for_subject(self, collection_id: str, subject_id: str) -> list[LockoutState]:
        stmt = select(lockouts).where(lockouts.c.collection_id == collection_id,
                                      lockouts.c.subject_id == subject_id)
        return [_lockout(row) for row in self._conn.execute(stmt)]

    def for_subjects(self, collection_id: str,
                     subject_ids: Sequence[str]) -> list[LockoutState]:
        if not subject_ids:
            return []
        stmt = select(lockouts).where(lockouts.c.collection_id == collection_id,
                                      lockouts.c.subject_id.in_(sorted(set(subject_ids))))
        return [_lockout(row) for row in self._conn.execute(stmt)]

    def policy_names(self) -> list[str]:
        return list(self._conn.execute(select(lockouts.c.policy_name).distinct()).scalars())

    def delete_quiet(self, policy_name: str, before: datetime) -> int:
        stmt = delete(lockouts).where(
            lockouts.c.policy_name == policy_name,
            or_(lockouts.c.last_failure_at.is_(None), lockouts.c.last_failure_at < before),
            or_(lockouts.c.locked_until.is_(None), lockouts.c.locked_until < before))
        return int(self._conn.execute(stmt).rowcount)

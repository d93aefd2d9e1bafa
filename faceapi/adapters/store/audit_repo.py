"""The audit trail in SQL: serialised, hash-chained appends and filtered reads.

Serialisation: every append first takes the trail's writer lock, then reads the head,
then inserts seq+1. PostgreSQL: `pg_advisory_xact_lock`, held to the end of the
transaction, so gunicorn workers on several hosts take turns. SQLite: the unit of work
opened the transaction with BEGIN IMMEDIATE, which already holds the database's single
write lock. Either way the lock is released only when the change and its event commit
(or roll back) together.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Row, Select, and_, or_, select, text
from sqlalchemy.engine import Connection

from faceapi.adapters.signing_keys import CheckpointSigner
from faceapi.adapters.store.tables import audit_checkpoints, audit_events
from faceapi.domain.access import event_collection
from faceapi.domain.audit import (
    GENESIS_HASH,
    Action,
    Actor,
    AuditEvent,
    AuditQuery,
    Checkpoint,
    RecordedEvent,
    validate_event,
)
from faceapi.domain.audit_chain import (
    CorruptRecord,
    canonical_json,
    compute_hash,
    event_fields,
    rotation_event,
)

log = structlog.get_logger(__name__)

# A fixed 63-bit key: every faceapi process contends for the same advisory lock.
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"faceapi.audit_events").digest()[:8], "big") >> 1


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _request_id_from_context() -> str | None:
    # logging.bind_request puts the request id in structlog's contextvars; services
    # need not thread it through every call.
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def row_to_record(row: Row[Any, Any]) -> RecordedEvent:
    try:
        event = AuditEvent(
            action=Action(row.action), outcome=row.outcome,
            actor=Actor(role=row.actor_role, key_id=row.actor_key_id),
            resource=row.resource, subject_id=row.subject_id, policy_name=row.policy_name,
            policy_version=row.policy_version, engine=row.engine, model_version=row.model_version,
            scores=json.loads(row.scores), input_digests=tuple(json.loads(row.input_digests)),
            request_id=row.request_id, reason=row.reason, details=json.loads(row.details))
    except (ValueError, TypeError) as exc:
        raise CorruptRecord(row.seq, row.id, str(exc)) from exc
    return RecordedEvent(seq=row.seq, id=row.id, time=as_utc(row.occurred_at), event=event,
                         prev_hash=row.prev_hash, hash=row.hash)


def event_row(record: RecordedEvent) -> dict[str, Any]:
    """Column values for one event; JSON columns hold canonical JSON, as hashed."""
    event = record.event
    fields = event_fields(event)
    return {
        "seq": record.seq, "id": record.id, "occurred_at": record.time,
        "actor_key_id": event.actor.key_id, "actor_role": event.actor.role,
        "action": event.action.value, "outcome": event.outcome, "resource": event.resource,
        "subject_id": event.subject_id, "policy_name": event.policy_name,
        "policy_version": event.policy_version, "engine": event.engine,
        "model_version": event.model_version,
        **{name: canonical_json(fields[name]).decode()
           for name in ("scores", "input_digests", "details")},
        "request_id": event.request_id, "reason": event.reason,
        "prev_hash": record.prev_hash, "hash": record.hash,
        "collection_id": event_collection(event)}


def _row_to_checkpoint(row: Row[Any, Any]) -> Checkpoint:
    return Checkpoint(seq=row.seq, event_hash=row.event_hash, created_at=as_utc(row.created_at),
                      key_id=row.key_id, signature=row.signature)


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_clauses(query: AuditQuery) -> list[ColumnElement[bool]]:
    t = audit_events.c
    clauses: list[ColumnElement[bool]] = []
    if query.since is not None:
        clauses.append(t.occurred_at >= as_utc(query.since))
    if query.until is not None:
        clauses.append(t.occurred_at < as_utc(query.until))
    if query.actor_key_id is not None:
        clauses.append(t.actor_key_id == query.actor_key_id)
    if query.actor_role is not None:
        clauses.append(t.actor_role == query.actor_role)
    if query.actions:
        clauses.append(t.action.in_(query.actions))
    if query.outcome is not None:
        clauses.append(t.outcome == query.outcome)
    if query.policy_name is not None:
        clauses.append(t.policy_name == query.policy_name)
    if query.resource is not None:
        parent = query.resource.rstrip("/")
        clauses.append(or_(t.resource == parent,
                           t.resource.like(_like_escape(parent) + "/%", escape="\\")))
    if query.subject_id is not None:
        clauses.append(t.subject_id == query.subject_id)
    if query.request_id is not None:
        clauses.append(t.request_id == query.request_id)
    if query.until_seq is not None:
        clauses.append(t.seq <= query.until_seq)
    # The reader's scope: an event naming no collection (policy) is outside any limit.
    if query.scope_collections is not None:
        clauses.append(t.collection_id.in_(sorted(query.scope_collections)))
    if query.scope_policies is not None:
        clauses.append(t.policy_name.in_(sorted(query.scope_policies)))
    return clauses


class SqlAuditLog:
    """AuditLog adapter over one open Connection (one transaction)."""

    def __init__(self, conn: Connection, *, signer: CheckpointSigner, now: Callable[[], datetime],
                 checkpoint_every: int, checkpoint_seconds: int, read_only: bool = False) -> None:
        self._conn = conn
        self._signer = signer
        self._now = now
        self._every = checkpoint_every
        self._seconds = checkpoint_seconds
        self._read_only = read_only
        self._locked = False
        self.appended = 0
        # While this transaction holds the writer lock nobody else can append, so the
        # head and the last checkpoint read once stay true until commit or rollback:
        # later appends in the same transaction skip those two queries.
        self._head: tuple[int, str] | None = None
        self._last_checkpoint: tuple[int, datetime, str] | None = None
        # Set while the key-rotation event is appended: that append must not sign.
        self._rotating = False

    def transaction_ended(self) -> None:
        """The unit of work committed or rolled back: the advisory lock is gone."""
        self._locked = False
        self.appended = 0
        self._head = None
        self._last_checkpoint = None

    # -- writing

    def _lock(self) -> None:
        if self._read_only:
            raise RuntimeError("audit append in a read-only unit of work")
        if not self._locked and self._conn.dialect.name == "postgresql":
            self._conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": ADVISORY_LOCK_KEY})
        self._locked = True

    def _head_row(self) -> tuple[int, str]:
        if self._head is None:
            row = self._conn.execute(
                select(audit_events.c.seq, audit_events.c.hash)
                .order_by(audit_events.c.seq.desc()).limit(1)).first()
            self._head = (row.seq, row.hash) if row is not None else (0, GENESIS_HASH)
        return self._head

    def append(self, event: AuditEvent) -> RecordedEvent:
        """Check, chain and write one event in the open transaction."""
        if event.request_id is None:
            event = replace(event, request_id=_request_id_from_context())
        validate_event(event)
        self._lock()
        head_seq, prev_hash = self._head_row()
        seq = head_seq + 1
        now = as_utc(self._now())
        event_id = str(uuid.uuid4())
        digest = compute_hash(seq, event_id, now, event, prev_hash)
        recorded = RecordedEvent(seq=seq, id=event_id, time=now, event=event,
                                 prev_hash=prev_hash, hash=digest)
        self._conn.execute(audit_events.insert().values(**event_row(recorded)))
        self._head = (seq, digest)
        self.appended += 1
        self._maybe_checkpoint(seq, digest, now)
        return recorded

    def _last_checkpoint_row(self) -> tuple[int, datetime, str] | None:
        if self._last_checkpoint is None:
            row = self._conn.execute(
                select(audit_checkpoints.c.seq, audit_checkpoints.c.created_at,
                       audit_checkpoints.c.key_id)
                .order_by(audit_checkpoints.c.seq.desc()).limit(1)).first()
            if row is not None:
                self._last_checkpoint = (row.seq, as_utc(row.created_at), row.key_id)
        return self._last_checkpoint

    def _maybe_checkpoint(self, seq: int, digest: str, now: datetime) -> None:
        if self._rotating:
            return
        last = self._last_checkpoint_row()
        due = (last is None or seq - last[0] >= self._every
               or (now - last[1]).total_seconds() >= self._seconds)
        if due:
            self._write_checkpoint(seq, digest, now)

    def _write_checkpoint(self, seq: int, digest: str, now: datetime) -> Checkpoint:
        rotated = self._record_rotation()
        if rotated is not None:
            seq, digest, now = rotated.seq, rotated.hash, rotated.time
        cp = self._signer.sign(seq, digest, now)
        self._conn.execute(audit_checkpoints.insert().values(
            seq=cp.seq, event_hash=cp.event_hash, created_at=cp.created_at, key_id=cp.key_id,
            signature=cp.signature))
        self._last_checkpoint = (cp.seq, cp.created_at, cp.key_id)
        return cp

    def _record_rotation(self) -> RecordedEvent | None:
        """Before the first checkpoint a new key signs (the previous one was signed by
        another key, and this key has signed none yet), append `audit.signing_key.rotated`
        so the new key's first signature covers the record of the change. Once per key:
        during a rolling restart old and new workers alternate, which is no new rotation."""
        last = self._last_checkpoint_row()
        key_id = self._signer.key_id
        if last is None or last[2] == key_id:
            return None
        signed_before = self._conn.execute(
            select(audit_checkpoints.c.seq).where(audit_checkpoints.c.key_id == key_id)
            .limit(1)).first()
        if signed_before is not None:
            return None
        old_trusted = last[2] in self._signer.trusted_key_ids
        if not old_trusted:
            log.warning("audit_signing_key_rotated_old_key_not_trusted", old_key_id=last[2],
                        new_key_id=key_id, setting="FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS")
        self._rotating = True
        try:
            return self.append(rotation_event(last[2], key_id, old_key_trusted=old_trusted))
        finally:
            self._rotating = False

    def checkpoint_due(self) -> bool:
        """Whether the head has events no checkpoint covers and the last checkpoint is
        older than the configured seconds (the time rule, for a quiet system)."""
        head_seq, _ = self._head_row()
        last = self._last_checkpoint_row()
        if head_seq == 0 or (last is not None and last[0] >= head_seq):
            return False
        return last is None or (as_utc(self._now()) - last[1]).total_seconds() >= self._seconds

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now; returns the head's checkpoint (new or existing)."""
        self._lock()
        head_seq, head_hash = self._head_row()
        if head_seq == 0:
            return None
        existing = self._conn.execute(
            select(audit_checkpoints).where(audit_checkpoints.c.seq == head_seq)).first()
        if existing is not None:
            return _row_to_checkpoint(existing)
        return self._write_checkpoint(head_seq, head_hash, as_utc(self._now()))

    # -- reading

    def get(self, event_id: str) -> RecordedEvent | None:
        row = self._conn.execute(select(audit_events).where(audit_events.c.id == event_id)).first()
        return None if row is None else row_to_record(row)

    def head(self) -> RecordedEvent | None:
        row = self._conn.execute(
            select(audit_events).order_by(audit_events.c.seq.desc()).limit(1)).first()
        return None if row is None else row_to_record(row)

    def _select(self, query: AuditQuery) -> Select[Any]:
        stmt = select(audit_events)
        clauses = filter_clauses(query)
        if query.after_seq is not None:
            clauses.append(audit_events.c.seq < query.after_seq if query.newest_first
                           else audit_events.c.seq > query.after_seq)
        if clauses:
            stmt = stmt.where(and_(*clauses))
        order = audit_events.c.seq.desc() if query.newest_first else audit_events.c.seq.asc()
        return stmt.order_by(order)

    def query(self, query: AuditQuery, limit: int) -> list[RecordedEvent]:
        rows = self._conn.execute(self._select(query).limit(limit)).all()
        return [row_to_record(row) for row in rows]

    def iter_events(self, query: AuditQuery | None = None) -> Iterator[RecordedEvent]:
        stmt = self._select(replace(query or AuditQuery(), newest_first=False))
        result = self._conn.execution_options(yield_per=1000).execute(stmt)
        try:
            for row in result:
                yield row_to_record(row)
        finally:
            # A reader that stops early (verify found a problem) must not leave a
            # PostgreSQL server-side cursor open.
            result.close()

    def checkpoints(self) -> Sequence[Checkpoint]:
        rows = self._conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.seq)).all()
        return [_row_to_checkpoint(row) for row in rows]

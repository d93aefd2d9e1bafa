"""The idempotency_records table (services/idempotency.py), and the hook that marks a
request's claim committed inside the transaction that commits the request's write.

Why a hook in the unit of work: the web layer claims an Idempotency-Key before it runs
a use case, and that use case opens and commits its own unit of work (the decision
pipeline, enrollment, a review vote). The claim must turn `committed` in *that*
transaction, so that a crash can never leave a decision without its record (a retry
would decide again) nor a record without its decision (a retry would get nothing). The
web layer cannot pass its claim through every service, so it sets `ACTIVE_CLAIM` for
the duration of the call (`active_claim`); `SqlAlchemyUnitOfWork.commit()` calls
`mark_active_claim` before it commits a transaction that appended an audit event
(every write of these use cases has one). The answer itself is rendered by the web
layer after the use case returns and saved in a second, small transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from faceapi.adapters.store.db import UNAUDITED
from faceapi.adapters.store.tables import idempotency_records as t
from faceapi.domain.errors import IdempotencyInProgress
from faceapi.services.ports import IdempotencyRecord

PENDING, COMMITTED, DONE, ERASED = "pending", "committed", "done", "erased"


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; we only ever store UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _record(row: Row[Any]) -> IdempotencyRecord:
    headers = tuple((str(k), str(v)) for k, v in json.loads(row.headers)) \
        if row.headers else ()
    return IdempotencyRecord(
        key_id=row.key_id, key=row.idempotency_key, fingerprint=row.fingerprint,
        state=row.state, claim_token=row.claim_token, created_at=_utc(row.created_at),
        claimed_at=_utc(row.claimed_at), collection_id=row.collection_id,
        status=row.status, body=row.body, headers=headers)


def _held(key_id: str, key: str, claim_token: str) -> Any:
    return and_(t.c.key_id == key_id, t.c.idempotency_key == key,
                t.c.claim_token == claim_token)


class SqlIdempotencyRepo:
    """IdempotencyRepo on the unit of work's connection (it never commits). Every
    statement is marked unaudited: these rows are bookkeeping about requests, and the
    request's own write carries the audit event."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _run(self, stmt: Executable) -> Any:
        return self._conn.execute(stmt.execution_options(**{UNAUDITED: True}))

    def _values(self, record: IdempotencyRecord) -> dict[str, Any]:
        return {"key_id": record.key_id, "idempotency_key": record.key,
                "fingerprint": record.fingerprint, "state": record.state,
                "claim_token": record.claim_token, "created_at": record.created_at,
                "claimed_at": record.claimed_at, "collection_id": record.collection_id,
                "status": None, "body": None, "headers": None}

    def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        values = self._values(record)
        # ON CONFLICT DO NOTHING: a concurrent claim of the same key waits for the
        # first one's transaction, then inserts nothing (no error that would abort a
        # PostgreSQL transaction).
        dialect = self._conn.dialect.name
        if dialect == "postgresql":
            stmt: Any = pg_insert(t).values(**values).on_conflict_do_nothing()
        elif dialect == "sqlite":
            stmt = sqlite_insert(t).values(**values).on_conflict_do_nothing()
        else:  # pragma: no cover - we run on these two only
            stmt = insert(t).values(**values)
        # RETURNING, not rowcount: psycopg reports no rowcount for ON CONFLICT inserts.
        if self._run(stmt.returning(t.c.claim_token)).first() is not None:
            return None
        row = self._conn.execute(
            select(t).where(t.c.key_id == record.key_id, t.c.idempotency_key == record.key)
            .with_for_update()).one()
        return _record(row)

    def take_over(self, record: IdempotencyRecord, *, previous_token: str) -> bool:
        values = self._values(record)
        del values["key_id"], values["idempotency_key"]
        result = self._run(update(t).where(_held(record.key_id, record.key, previous_token))
                           .values(**values))
        return bool(result.rowcount == 1)

    def mark_committed(self, key_id: str, key: str, claim_token: str) -> bool:
        result = self._run(update(t).where(_held(key_id, key, claim_token),
                                           t.c.state == PENDING).values(state=COMMITTED))
        return bool(result.rowcount == 1)

    def save_response(self, key_id: str, key: str, claim_token: str, *, status: int,
                      body: str, headers: tuple[tuple[str, str], ...],
                      collection_id: str | None) -> bool:
        values: dict[str, Any] = {"state": DONE, "status": status, "body": body,
                                  "headers": json.dumps([list(h) for h in headers])}
        if collection_id is not None:
            values["collection_id"] = collection_id
        result = self._run(update(t).where(_held(key_id, key, claim_token),
                                           t.c.state == COMMITTED).values(**values))
        return bool(result.rowcount == 1)

    def release(self, key_id: str, key: str, claim_token: str) -> None:
        self._run(delete(t).where(_held(key_id, key, claim_token)))

    def delete_before(self, moment: datetime) -> int:
        return int(self._run(delete(t).where(t.c.created_at < moment)).rowcount)

    def erase_collection(self, collection_id: str) -> int:
        result = self._run(update(t).where(t.c.collection_id == collection_id,
                                           t.c.state == DONE)
                           .values(state=ERASED, body=None, headers=None))
        return int(result.rowcount)


# --- The claim of the request being served ---------------------------------------------


@dataclass
class ActiveClaim:
    """The Idempotency-Key claim of the request this thread serves; `committed` turns
    True once a transaction carrying the request's write has committed with it."""

    key_id: str
    key: str
    claim_token: str
    committed: bool = False


ACTIVE_CLAIM: ContextVar[ActiveClaim | None] = ContextVar("faceapi_idempotency_claim",
                                                          default=None)


@contextmanager
def active_claim(claim: ActiveClaim) -> Iterator[ActiveClaim]:
    """Make `claim` the one the units of work of this context commit with."""
    token = ACTIVE_CLAIM.set(claim)
    try:
        yield claim
    finally:
        ACTIVE_CLAIM.reset(token)


def mark_active_claim(conn: Connection) -> ActiveClaim | None:
    """Inside the transaction about to commit: pending -> committed for the active claim
    (once per request). Raises IdempotencyInProgress, which rolls the write back, when
    the claim was taken over meanwhile (a request that outlived its lease): then the
    other request owns the key and this one must not commit a second result."""
    claim = ACTIVE_CLAIM.get()
    if claim is None or claim.committed:
        return None
    if not SqlIdempotencyRepo(conn).mark_committed(claim.key_id, claim.key,
                                                   claim.claim_token):
        raise IdempotencyInProgress(
            "another request with this Idempotency-Key took it over; nothing was written",
            retry_after=1)
    return claim

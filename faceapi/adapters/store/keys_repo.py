"""The api_keys table: hashed keys, looked up by their public prefix."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Row, func, insert, select, text, update
from sqlalchemy.engine import Connection

from faceapi.adapters.secret_box import SecretBox, SecretBoxError
from faceapi.adapters.store.db import UNAUDITED
from faceapi.adapters.store.tables import api_keys
from faceapi.domain.access import ApiKey

log = structlog.get_logger(__name__)

# A fixed 63-bit advisory lock id for key-table writers that must not interleave.
KEYS_LOCK_KEY = int.from_bytes(hashlib.sha256(b"faceapi.api_keys").digest()[:8], "big") >> 1


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    # SQLite hands back naive datetimes; we only ever store UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _scope_to_db(scope: frozenset[str] | None) -> str | None:
    return None if scope is None else json.dumps(sorted(scope), separators=(",", ":"))


def _scope_from_db(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(json.loads(text))


def _row_to_key(row: Row[Any]) -> ApiKey:
    created_at = _utc(row.created_at)
    assert created_at is not None
    return ApiKey(id=row.id, name=row.name, role=row.role, key_hash=row.key_hash,
                  created_at=created_at, owner=row.owner,
                  collections=_scope_from_db(row.collections),
                  policies=_scope_from_db(row.policies),
                  expires_at=_utc(row.expires_at), revoked_at=_utc(row.revoked_at),
                  last_used_at=_utc(row.last_used_at), created_by=row.created_by)


class SqlApiKeyRepository:
    """ApiKeyRepository on the unit of work's connection (it never commits)."""

    def __init__(self, conn: Connection, secret_box: SecretBox | None = None) -> None:
        self._conn = conn
        self._box = secret_box

    def _require_box(self) -> SecretBox:
        if self._box is None:
            raise RuntimeError("this store has no secret box: SigV4 secrets are unavailable")
        return self._box

    def set_sigv4_secret(self, key_id: str, secret: str) -> None:
        # Sealed with the row's id as associated data: it opens for this key only.
        sealed = self._require_box().seal(secret, context=f"api_keys/{key_id}")
        self._conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                           .values(sigv4_secret_sealed=sealed))

    def sigv4_secret(self, key_id: str) -> str | None:
        sealed = self._conn.execute(select(api_keys.c.sigv4_secret_sealed)
                                    .where(api_keys.c.id == key_id)).scalar_one_or_none()
        if sealed is None:
            return None
        try:
            return self._require_box().open(sealed, context=f"api_keys/{key_id}")
        except SecretBoxError:
            # Another server key, or a row edited by hand: the key cannot sign. Treated
            # as "no secret" (the request is refused); the cause goes to the log.
            log.error("sigv4_secret_unreadable", key_id=key_id)
            return None

    def add(self, key: ApiKey) -> None:
        self._conn.execute(insert(api_keys).values(
            id=key.id, name=key.name, role=key.role, key_hash=key.key_hash, owner=key.owner,
            collections=_scope_to_db(key.collections), policies=_scope_to_db(key.policies),
            created_at=key.created_at, expires_at=key.expires_at, revoked_at=key.revoked_at,
            last_used_at=key.last_used_at, created_by=key.created_by))

    def get(self, key_id: str) -> ApiKey | None:
        row = self._conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        return None if row is None else _row_to_key(row)

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        stmt = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            stmt = stmt.where(api_keys.c.revoked_at.is_(None))
        return [_row_to_key(row) for row in self._conn.execute(stmt)]

    def lock(self) -> None:
        # SQLite: the unit of work began with BEGIN IMMEDIATE, which already holds the
        # database's one write lock. PostgreSQL: a transaction-scoped advisory lock.
        if self._conn.dialect.name == "postgresql":
            self._conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": KEYS_LOCK_KEY})

    def count(self) -> int:
        return int(self._conn.execute(select(func.count()).select_from(api_keys)).scalar_one())

    def revoke(self, key_id: str, at: datetime) -> None:
        self._conn.execute(update(api_keys).where(api_keys.c.id == key_id,
                                                  api_keys.c.revoked_at.is_(None))
                           .values(revoked_at=at))

    def touch(self, key_id: str, at: datetime) -> None:
        # The last-used time is bookkeeping, not a change an auditor needs: opting out
        # of the unit of work's "no change without its event" rule is deliberate.
        self._conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                           .values(last_used_at=at)
                           .execution_options(**{UNAUDITED: True}))

"""Policy versions in SQL (`policy_versions`), on the unit of work's connection."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, insert, select, text
from sqlalchemy.engine import Connection

from faceapi.adapters.store.tables import policy_versions
from faceapi.domain.policies import PolicyVersion

# pg_advisory_xact_lock key of the policy_versions writer (derived like KEYS_LOCK_KEY).
POLICY_VERSIONS_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"faceapi.policy_versions").digest()[:8], "big") >> 1


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _version(row: Row[Any]) -> PolicyVersion:
    return PolicyVersion(name=row.name, version=row.version,
                         canonical_text=row.canonical_text,
                         first_loaded_at=_utc(row.first_loaded_at),
                         audit_event_id=row.audit_event_id)


class SqlPolicyVersionsRepo:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def lock(self) -> None:
        # SQLite: the unit of work began with BEGIN IMMEDIATE, the database's one write
        # lock. PostgreSQL: a transaction-scoped advisory lock, so a second worker waits
        # and then reads the first one's committed rows instead of inserting them again.
        if self._conn.dialect.name == "postgresql":
            self._conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                               {"k": POLICY_VERSIONS_LOCK_KEY})

    def get(self, name: str, version: str) -> PolicyVersion | None:
        row = self._conn.execute(select(policy_versions).where(
            policy_versions.c.name == name, policy_versions.c.version == version)).first()
        return None if row is None else _version(row)

    def add(self, recorded: PolicyVersion) -> None:
        self._conn.execute(insert(policy_versions).values(
            name=recorded.name, version=recorded.version,
            canonical_text=recorded.canonical_text,
            first_loaded_at=recorded.first_loaded_at,
            audit_event_id=recorded.audit_event_id))

    def versions_of(self, name: str) -> list[PolicyVersion]:
        rows = self._conn.execute(select(policy_versions).where(policy_versions.c.name == name)
                                  .order_by(policy_versions.c.first_loaded_at,
                                            policy_versions.c.version))
        return [_version(row) for row in rows]

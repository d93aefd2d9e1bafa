"""Every table, as SQLAlchemy Core, on one MetaData.

Append new tables at the end of this file and create them in a new Alembic revision
(faceapi/store/migrations/versions/); the migrations, not `metadata.create_all`, are
what builds a database.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
)

# Named constraints so Alembic migrations (and SQLite batch mode) can refer to them.
metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# The audit trail. `seq` is assigned by the writer under a lock (not autoincrement) so
# that a gap always means a deleted event. Scores, digests and details are stored as
# canonical JSON text, not JSON/JSONB, so they read back byte for byte as hashed.
audit_events = Table(
    "audit_events", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(36), nullable=False, unique=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("actor_key_id", String(64)),
    Column("actor_role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("resource", String(256)),
    Column("subject_id", String(128)),
    Column("policy_name", String(64)),
    Column("policy_version", String(64)),
    Column("engine", String(32)),
    Column("model_version", String(128)),
    Column("scores", Text, nullable=False),
    Column("input_digests", Text, nullable=False),
    Column("request_id", String(128)),
    Column("reason", String(256)),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_events_occurred_at", audit_events.c.occurred_at)
Index("ix_audit_events_action", audit_events.c.action)
Index("ix_audit_events_actor_key_id", audit_events.c.actor_key_id)
Index("ix_audit_events_resource", audit_events.c.resource)
Index("ix_audit_events_subject_id", audit_events.c.subject_id)
Index("ix_audit_events_request_id", audit_events.c.request_id)
Index("ix_audit_events_policy_name", audit_events.c.policy_name)

# Signed chain heads. One per seq at most.
audit_checkpoints = Table(
    "audit_checkpoints", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
)

# Tables whose writes are the audit trail itself (the unit of work does not ask for an
# audit event when only these change).
AUDIT_TABLES = frozenset({"audit_events", "audit_checkpoints"})

# API keys (faceapi/services/keys.py). `id` is the key's public prefix; only the SHA-256
# of the whole key is kept. Scopes are canonical JSON lists, NULL meaning unrestricted.
api_keys = Table(
    "api_keys", metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("collections", Text),
    Column("policies", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("created_by", String(64)),
)

"""Reads follow the key's scope (issue 12, finding 6): audit events name the collection
they belong to in a column, so a collection-scoped auditor's reads filter in SQL.

Reviews already carry their request's scope (`collection_id`, NULL for a compare, and
`policy_name`); the review service now enforces it on every read and vote.

The column is derived from each event's hashed content (resource, details), so filling
it for existing events changes nothing the chain covers. The append-only triggers are
lifted for that one UPDATE and put back in the same transaction.

Revision ID: 0008_review_scope
Revises: 0007_key_owners
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from faceapi.domain.access import collection_named

revision = "0008_review_scope"
down_revision = "0007_key_owners"
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = ("update", "delete")


def _lift_triggers(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    else:
        for verb in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS audit_events_no_{verb}")


def _restore_triggers(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")
    else:
        # The same triggers as revision 0001_audit.
        for verb in _SQLITE_TRIGGERS:
            op.execute(f"CREATE TRIGGER audit_events_no_{verb} BEFORE {verb.upper()} ON "
                       f"audit_events BEGIN SELECT RAISE(ABORT, 'faceapi: audit_events is "
                       f"append-only ({verb.upper()} refused)'); END")


def _backfill() -> None:
    bind = op.get_bind()
    events = sa.table("audit_events", sa.column("seq", sa.BigInteger()),
                      sa.column("resource", sa.String()), sa.column("details", sa.Text()),
                      sa.column("collection_id", sa.String()))
    named = [{"s": row.seq, "c": cid} for row in bind.execute(
                 sa.select(events.c.seq, events.c.resource, events.c.details))
             if (cid := collection_named(row.resource, json.loads(row.details))) is not None]
    if not named:
        return
    dialect = bind.dialect.name
    _lift_triggers(dialect)
    bind.execute(sa.update(events).where(events.c.seq == sa.bindparam("s"))
                 .values(collection_id=sa.bindparam("c")), named)
    _restore_triggers(dialect)


def upgrade() -> None:
    # A plain ADD COLUMN (not a batch table copy): SQLite keeps the table and its triggers.
    op.add_column("audit_events", sa.Column("collection_id", sa.String(128), nullable=True))
    op.create_index("ix_audit_events_collection_id", "audit_events", ["collection_id"])
    _backfill()


def downgrade() -> None:
    op.drop_index("ix_audit_events_collection_id", table_name="audit_events")
    op.drop_column("audit_events", "collection_id")

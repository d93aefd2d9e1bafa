"""Idempotency-Key records (issue 17, item 2): the first answer to a request, per API
key and key, kept 24 h (services/idempotency.py).

Revision ID: 0012_idempotency
Revises: 0010_consent_expiry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_idempotency"
down_revision = "0010_consent_expiry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_records",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claim_token", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("collection_id", sa.String(128), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", "idempotency_key", name="pk_idempotency_records"),
    )
    op.create_index("ix_idempotency_records_created_at", "idempotency_records",
                    ["created_at"])
    op.create_index("ix_idempotency_records_collection_id", "idempotency_records",
                    ["collection_id"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_records_collection_id", "idempotency_records")
    op.drop_index("ix_idempotency_records_created_at", "idempotency_records")
    op.drop_table("idempotency_records")

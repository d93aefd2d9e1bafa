"""Data lifecycle (issue 16, item 4): a consent may lapse, and every policy version a
start loads is kept with its canonical text.

`consents.expires_at` (NULL for every existing consent: they do not lapse) with an index
for `faceapi retention run`, which erases the subjects whose consent in force has
lapsed. `policy_versions` holds (name, version, canonical text, first load time, the
`policy.load` audit event id); versions loaded before this revision were never kept, so
only the versions loaded from the first start after it can be read back.

Revision ID: 0010_consent_expiry
Revises: 0009_sigv4_secrets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_consent_expiry"
down_revision = "0009_sigv4_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_consents_expires_at", "consents", ["expires_at"])
    op.create_table(
        "policy_versions",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("canonical_text", sa.Text(), nullable=False),
        sa.Column("first_loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audit_event_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_policy_versions"),
    )


def downgrade() -> None:
    op.drop_table("policy_versions")
    op.drop_index("ix_consents_expires_at", table_name="consents")
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("expires_at")

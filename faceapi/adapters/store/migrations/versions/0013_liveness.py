"""Decisions record liveness (issue 17, item 3): whether an external liveness service's
attestation was required and valid, by which issuer, and the SHA-256 of its token id
(never the token). A partial unique index over attested decisions makes each token
single use, in the decision's own transaction.

Existing decisions were made before any policy could require liveness: `not_required`.

Revision ID: 0013_liveness
Revises: 0012_idempotency
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_liveness"
down_revision = "0012_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("liveness_status", sa.String(16), nullable=False,
                                   server_default="not_required"))
        batch.add_column(sa.Column("liveness_issuer", sa.String(256), nullable=True))
        batch.add_column(sa.Column("liveness_jti_sha256", sa.String(64), nullable=True))
    attested = sa.text("liveness_status = 'attested'")
    op.create_index("ux_decisions_liveness_jti", "decisions", ["liveness_jti_sha256"],
                    unique=True, postgresql_where=attested, sqlite_where=attested)


def downgrade() -> None:
    op.drop_index("ux_decisions_liveness_jti", table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("liveness_jti_sha256")
        batch.drop_column("liveness_issuer")
        batch.drop_column("liveness_status")

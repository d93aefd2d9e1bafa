"""API keys carry an encrypted SigV4 secret for the Rekognition-compatible endpoint
(issue 12, finding 10).

Existing keys get none (NULL): nobody ever saw a secret for them, so they cannot sign
SigV4 requests and the emulator refuses them until they are rotated
(`faceapi keys rotate KEY_ID`), which shows the new key's SigV4 secret once.

Revision ID: 0009_sigv4_secrets
Revises: 0008_review_scope
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_sigv4_secrets"
down_revision = "0008_review_scope"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("sigv4_secret_sealed", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("sigv4_secret_sealed")

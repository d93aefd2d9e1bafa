"""API keys carry an encrypted SigV4 secret for the Rekognition-compatible endpoint
(issue 12, finding 10).

Revision ID: 0009_sigv4_secrets
Revises: 0008_review_scope
"""

from __future__ import annotations

revision = "0009_sigv4_secrets"
down_revision = "0008_review_scope"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the work on this finding


def downgrade() -> None:
    pass

"""API keys name their owner; SigV4 secrets for the Rekognition-compatible endpoint (issue 12, findings 3 and 10).

Revision ID: 0007_key_owners
Revises: 0006_policy_binding
"""

from __future__ import annotations

revision = "0007_key_owners"
down_revision = "0006_policy_binding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the work on this finding


def downgrade() -> None:
    pass

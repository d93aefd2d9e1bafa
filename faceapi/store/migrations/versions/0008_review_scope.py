"""Reviews carry the scope of the request that made them (issue 12, finding 6).

Revision ID: 0008_review_scope
Revises: 0007_key_owners
"""

from __future__ import annotations

revision = "0008_review_scope"
down_revision = "0007_key_owners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the work on this finding


def downgrade() -> None:
    pass

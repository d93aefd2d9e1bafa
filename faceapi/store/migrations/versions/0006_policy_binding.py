"""Collections bind the policies that may be used on them; lockout is a property of the subject (issue 12, finding 1).

Revision ID: 0006_policy_binding
Revises: 0005_face_crops
"""

from __future__ import annotations

revision = "0006_policy_binding"
down_revision = "0005_face_crops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the work on this finding


def downgrade() -> None:
    pass

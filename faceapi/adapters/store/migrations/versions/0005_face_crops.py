"""Collections may keep a crop of each indexed face for reviewers; faces of a remote
engine are found by the engine's face id.

Revision ID: 0005_face_crops
Revises: 0004_decisions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_face_crops"
down_revision = "0004_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("keep_face_crops", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
    op.create_index("ix_faces_collection_engine_face", "faces",
                    ["collection_id", "engine_face_id"])


def downgrade() -> None:
    op.drop_index("ix_faces_collection_engine_face", table_name="faces")
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("keep_face_crops")

"""Collections, subjects, faces (with float32 descriptors) and consent records.

Revision ID: 0003_collections
Revises: 0002_api_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_collections"
down_revision = "0002_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("collection_id", sa.String(128), nullable=False),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("consent_required", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", name="pk_collections"),
    )
    op.create_table(
        "subjects",
        sa.Column("collection_id", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "subject_id", name="pk_subjects"),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.collection_id"],
                                name="fk_subjects_collection_id_collections",
                                ondelete="CASCADE"),
    )
    op.create_table(
        "faces",
        sa.Column("face_id", sa.String(36), nullable=False),
        sa.Column("collection_id", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("image_id", sa.String(36), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("box_width", sa.Float(), nullable=False),
        sa.Column("box_height", sa.Float(), nullable=False),
        sa.Column("box_left", sa.Float(), nullable=False),
        sa.Column("box_top", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("brightness", sa.Float()),
        sa.Column("sharpness", sa.Float()),
        sa.Column("roll", sa.Float()),
        sa.Column("yaw", sa.Float()),
        sa.Column("pitch", sa.Float()),
        sa.Column("width_px", sa.Integer(), nullable=False),
        sa.Column("height_px", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary()),
        sa.Column("engine_face_id", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_version", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("face_id", name="pk_faces"),
        sa.ForeignKeyConstraint(["collection_id", "subject_id"],
                                ["subjects.collection_id", "subjects.subject_id"],
                                name="fk_faces_subject", ondelete="CASCADE"),
    )
    op.create_index("ix_faces_collection_face", "faces", ["collection_id", "face_id"])
    op.create_index("ix_faces_collection_subject", "faces", ["collection_id", "subject_id"])
    op.create_index("ix_faces_collection_image", "faces", ["collection_id", "image_sha256"])
    op.create_index("ix_faces_collection_added", "faces", ["collection_id", "added_version"])
    op.create_table(
        "consents",
        sa.Column("consent_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("basis", sa.String(64), nullable=False),
        sa.Column("reference", sa.String(256), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(64)),
        sa.PrimaryKeyConstraint("consent_id", name="pk_consents"),
        sa.ForeignKeyConstraint(["collection_id", "subject_id"],
                                ["subjects.collection_id", "subjects.subject_id"],
                                name="fk_consents_subject", ondelete="CASCADE"),
    )
    op.create_index("ix_consents_collection_subject", "consents",
                    ["collection_id", "subject_id"])


def downgrade() -> None:
    op.drop_table("consents")
    op.drop_table("faces")
    op.drop_table("subjects")
    op.drop_table("collections")

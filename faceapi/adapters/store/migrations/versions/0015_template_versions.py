"""Template versions and kept face chips (issue 17, item 5).

Every face records the template version of its descriptor (what the descriptor depends
on: recogniser, alignment, jitter; not the detector), so a collection can hold faces of
an old and a new version while `faceapi collections reindex` moves it, and a detector
change alone invalidates nothing. Collections get `keep_chips` (on), and `face_chips`
keeps each new face's aligned chip, sealed.

Existing faces: on the local engine the model version was `dlib-<v>/resnet_v1/<detector>`
with the 68-point alignment and no jitter, so their template version is
`dlib-<v>/resnet_v1/align68/jitter1`; on other engines it is the collection's model
version. Faces enrolled before this revision have no chip (reindex reports them).

Revision ID: 0015_template_versions
Revises: 0014_webhooks
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0015_template_versions"
down_revision = "0014_webhooks"
branch_labels = None
depends_on = None

_LOCAL = re.compile(r"^(dlib-[^/]+/resnet_v1)/(?:hog|cnn)$")


def template_of(engine: str, model_version: str) -> str:
    """The template version of faces a collection of this engine and model indexed."""
    found = _LOCAL.match(model_version) if engine == "local" else None
    return f"{found.group(1)}/align68/jitter1" if found else model_version


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch table copy: on SQLite a copy of `collections`
    # drops the old table, and its ON DELETE CASCADE would empty subjects and faces.
    op.add_column("collections", sa.Column("keep_chips", sa.Boolean(), nullable=False,
                                           server_default=sa.true()))
    op.add_column("faces", sa.Column("template_version", sa.String(128), nullable=False,
                                     server_default=""))
    op.create_index("ix_faces_collection_template", "faces",
                    ["collection_id", "template_version"])
    conn = op.get_bind()
    collections = sa.table("collections", sa.column("collection_id"), sa.column("engine"),
                           sa.column("model_version"))
    faces = sa.table("faces", sa.column("collection_id"), sa.column("template_version"))
    for row in conn.execute(sa.select(collections)).all():
        conn.execute(sa.update(faces).where(faces.c.collection_id == row.collection_id)
                     .values(template_version=template_of(row.engine, row.model_version)))
    op.create_table(
        "face_chips",
        sa.Column("face_id", sa.String(36), nullable=False),
        sa.Column("collection_id", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("chip_format", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("face_id", name="pk_face_chips"),
    )
    op.create_index("ix_face_chips_collection_subject", "face_chips",
                    ["collection_id", "subject_id"])


def downgrade() -> None:
    op.drop_index("ix_face_chips_collection_subject", table_name="face_chips")
    op.drop_table("face_chips")
    op.drop_index("ix_faces_collection_template", table_name="faces")
    with op.batch_alter_table("faces") as batch:
        batch.drop_column("template_version")
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("keep_chips")

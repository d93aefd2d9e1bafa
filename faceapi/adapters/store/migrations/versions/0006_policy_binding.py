"""Collections bind the policies that may be used on them (issue 12, finding 1).

Existing collections are bound to the default binding for new collections
(FACEAPI_DEFAULT_COLLECTION_POLICIES, by default the shipped non-consequential
policies `login,photo_tagging`). That fails closed: a collection searched under a
consequential policy (a watchlist) refuses it until an unscoped admin binds it again
(PUT /v1/collections/{id}/policies, docs/collections.md).

Revision ID: 0006_policy_binding
Revises: 0005_face_crops
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0006_policy_binding"
down_revision = "0005_face_crops"
branch_labels = None
depends_on = None

DEFAULT_BINDING = "login,photo_tagging"


def _default_binding() -> str:
    raw = os.environ.get("FACEAPI_DEFAULT_COLLECTION_POLICIES", DEFAULT_BINDING)
    names = sorted({n.strip().lower() for n in raw.split(",") if n.strip()})
    return ",".join(names)


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("policies", sa.String(1024), nullable=False,
                                   server_default=""))
    collections = sa.table("collections", sa.column("policies", sa.String(1024)))
    op.execute(collections.update().values(policies=_default_binding()))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("policies")

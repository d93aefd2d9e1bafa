"""API keys name the person or system that owns them (issue 12, finding 3): the
two-person rule counts distinct owners, not keys.

Existing keys take their name as owner (the name was "who or what uses the key"); the
first admin key made by `faceapi keys bootstrap` takes `bootstrap`, as new ones do.

Revision ID: 0007_key_owners
Revises: 0006_policy_binding
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_key_owners"
down_revision = "0006_policy_binding"
branch_labels = None
depends_on = None

# faceapi.services.keys.BOOTSTRAP_KEY_NAME and the bootstrap audit actor's key id, as
# they were when this revision was written (a migration must not import live code).
_BOOTSTRAP_NAME = "bootstrap-admin"
_BOOTSTRAP_CREATOR = "bootstrap"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("owner", sa.String(128), nullable=True))
    op.execute("UPDATE api_keys SET owner = name")
    op.execute(sa.text("UPDATE api_keys SET owner = 'bootstrap' "
                       "WHERE name = :name AND created_by = :creator")
               .bindparams(name=_BOOTSTRAP_NAME, creator=_BOOTSTRAP_CREATOR))
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("owner", existing_type=sa.String(128), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("owner")

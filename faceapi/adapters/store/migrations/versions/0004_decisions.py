"""Decisions, human reviews with their votes, and lockout state.

Revision ID: 0004_decisions
Revises: 0003_collections
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_decisions"
down_revision = "0003_collections"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("policy_name", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("collection_id", sa.String(128)),
        sa.Column("subject_id", sa.String(128)),
        sa.Column("similarity", sa.Float()),
        sa.Column("candidates", sa.Text(), nullable=False),
        sa.Column("matched_face_id", sa.String(36)),
        sa.Column("review_id", sa.String(36)),
        sa.Column("requester_key_id", sa.String(64)),
        sa.Column("requester_role", sa.String(16)),
        sa.Column("probe_sha256", sa.String(64)),
        sa.Column("audit_event_id", sa.String(36)),
        sa.Column("request_id", sa.String(128)),
        sa.Column("engine", sa.String(32)),
        sa.Column("model_version", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
    )
    op.create_index("ix_decisions_collection_subject", "decisions",
                    ["collection_id", "subject_id"])
    op.create_index("ix_decisions_created_at", "decisions", ["created_at"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("decision_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("policy_name", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("collection_id", sa.String(128)),
        sa.Column("subject_id", sa.String(128)),
        sa.Column("requester_key_id", sa.String(64)),
        sa.Column("required_reviewers", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("candidates", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("evidence_expires_at", sa.DateTime(timezone=True)),
        sa.Column("evidence_purged", sa.Boolean(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"],
                                name="fk_reviews_decision_id_decisions", ondelete="CASCADE"),
    )
    op.create_index("ix_reviews_status_created", "reviews", ["status", "created_at"])
    op.create_index("ix_reviews_collection_subject", "reviews", ["collection_id", "subject_id"])
    op.create_index("ix_reviews_evidence_expires_at", "reviews", ["evidence_expires_at"])
    op.create_table(
        "review_votes",
        sa.Column("review_id", sa.String(36), nullable=False),
        sa.Column("reviewer_key_id", sa.String(64), nullable=False),
        sa.Column("reviewer_role", sa.String(16), nullable=False),
        sa.Column("vote", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("face_id", sa.String(36)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("review_id", "reviewer_key_id", name="pk_review_votes"),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"],
                                name="fk_review_votes_review_id_reviews", ondelete="CASCADE"),
    )
    op.create_table(
        "lockouts",
        sa.Column("collection_id", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("policy_name", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lock_count", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True)),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("collection_id", "subject_id", "policy_name",
                                name="pk_lockouts"),
    )


def downgrade() -> None:
    op.drop_table("lockouts")
    op.drop_table("review_votes")
    op.drop_table("reviews")
    op.drop_table("decisions")

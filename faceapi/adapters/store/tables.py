"""Every table, as SQLAlchemy Core, on one MetaData.

Append new tables at the end of this file and create them in a new Alembic revision
(faceapi/adapters/store/migrations/versions/); the migrations, not `metadata.create_all`, are
what builds a database.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

# Named constraints so Alembic migrations (and SQLite batch mode) can refer to them.
metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# The audit trail. `seq` is assigned by the writer under a lock (not autoincrement) so
# that a gap always means a deleted event. Scores, digests and details are stored as
# canonical JSON text, not JSON/JSONB, so they read back byte for byte as hashed.
audit_events = Table(
    "audit_events", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(36), nullable=False, unique=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("actor_key_id", String(64)),
    Column("actor_role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("resource", String(256)),
    Column("subject_id", String(128)),
    Column("policy_name", String(64)),
    Column("policy_version", String(64)),
    Column("engine", String(32)),
    Column("model_version", String(128)),
    Column("scores", Text, nullable=False),
    Column("input_digests", Text, nullable=False),
    Column("request_id", String(128)),
    Column("reason", String(256)),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Revision 0008_review_scope: the collection the event belongs to, derived at append
    # from its hashed content (access.event_collection), so scoped reads filter in SQL.
    Column("collection_id", String(128)),
)
Index("ix_audit_events_occurred_at", audit_events.c.occurred_at)
Index("ix_audit_events_collection_id", audit_events.c.collection_id)
Index("ix_audit_events_action", audit_events.c.action)
Index("ix_audit_events_actor_key_id", audit_events.c.actor_key_id)
Index("ix_audit_events_resource", audit_events.c.resource)
Index("ix_audit_events_subject_id", audit_events.c.subject_id)
Index("ix_audit_events_request_id", audit_events.c.request_id)
Index("ix_audit_events_policy_name", audit_events.c.policy_name)

# Signed chain heads. One per seq at most.
audit_checkpoints = Table(
    "audit_checkpoints", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
)

# Tables whose writes are the audit trail itself (the unit of work does not ask for an
# audit event when only these change).
AUDIT_TABLES = frozenset({"audit_events", "audit_checkpoints"})

# --- Collections (revision 0003_collections) ------------------------------------------
# A collection's `version` goes up with every change to its faces; each worker's search
# index compares it to know when to rebuild (faceapi/adapters/search/index.py).
collections = Table(
    "collections", metadata,
    Column("collection_id", String(128), primary_key=True),
    Column("description", String(512), nullable=False, default=""),
    Column("engine", String(32), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("version", BigInteger, nullable=False, default=0),
    Column("consent_required", Boolean, nullable=False, default=True),
    # Revision 0005_face_crops: keep a crop of each indexed face for reviewers.
    Column("keep_face_crops", Boolean, nullable=False, default=True),
    # Revision 0014_webhooks: enrolling a photo with several faces: refuse | largest.
    Column("multiple_faces", String(16), nullable=False, server_default="refuse"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Revision 0006_policy_binding: the verify/search policies that may be used on the
    # collection, sorted and comma-separated ("" binds none: everything is refused).
    Column("policies", String(1024), nullable=False, default=""),
    # Revision 0015_template_versions: keep each face's aligned chip (sealed, in
    # face_chips) so the collection can be re-embedded under a new model.
    Column("keep_chips", Boolean, nullable=False, default=True),
)

subjects = Table(
    "subjects", metadata,
    Column("collection_id", String(128),
           ForeignKey("collections.collection_id", ondelete="CASCADE"), primary_key=True),
    Column("subject_id", String(128), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per indexed face. `embedding` is the descriptor as little-endian float32
# bytes (NULL for engines that keep faces remotely and give us `engine_face_id`).
faces = Table(
    "faces", metadata,
    Column("face_id", String(36), primary_key=True),
    Column("collection_id", String(128), nullable=False),
    Column("subject_id", String(128), nullable=False),
    Column("image_id", String(36), nullable=False),
    Column("image_sha256", String(64), nullable=False),
    Column("box_width", Float, nullable=False),
    Column("box_height", Float, nullable=False),
    Column("box_left", Float, nullable=False),
    Column("box_top", Float, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("brightness", Float),
    Column("sharpness", Float),
    Column("roll", Float),
    Column("yaw", Float),
    Column("pitch", Float),
    Column("width_px", Integer, nullable=False, default=0),
    Column("height_px", Integer, nullable=False, default=0),
    Column("embedding", LargeBinary),
    Column("engine_face_id", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("added_version", BigInteger, nullable=False, default=0),
    # Revision 0015_template_versions: FaceEngine.template_version of the descriptor.
    Column("template_version", String(128), nullable=False, default=""),
    ForeignKeyConstraint(["collection_id", "subject_id"],
                         ["subjects.collection_id", "subjects.subject_id"],
                         name="fk_faces_subject", ondelete="CASCADE"),
)
Index("ix_faces_collection_face", faces.c.collection_id, faces.c.face_id)
Index("ix_faces_collection_subject", faces.c.collection_id, faces.c.subject_id)
Index("ix_faces_collection_image", faces.c.collection_id, faces.c.image_sha256)
Index("ix_faces_collection_added", faces.c.collection_id, faces.c.added_version)
# Revision 0005_face_crops: search results of a remote engine name its own face ids.
Index("ix_faces_collection_engine_face", faces.c.collection_id, faces.c.engine_face_id)
Index("ix_faces_collection_template", faces.c.collection_id, faces.c.template_version)

# Consent records are appended, never edited: the newest one of a subject is in force,
# and the older ones show its history until the subject is erased.
consents = Table(
    "consents", metadata,
    Column("consent_id", Integer, primary_key=True, autoincrement=True),
    Column("collection_id", String(128), nullable=False),
    Column("subject_id", String(128), nullable=False),
    Column("basis", String(64), nullable=False),
    Column("reference", String(256), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("recorded_by", String(64)),
    ForeignKeyConstraint(["collection_id", "subject_id"],
                         ["subjects.collection_id", "subjects.subject_id"],
                         name="fk_consents_subject", ondelete="CASCADE"),
    # Revision 0010_consent_expiry: when the consent lapses (NULL: it does not).
    Column("expires_at", DateTime(timezone=True)),
)
Index("ix_consents_collection_subject", consents.c.collection_id, consents.c.subject_id)
Index("ix_consents_expires_at", consents.c.expires_at)

# API keys (faceapi/services/keys.py). `id` is the key's public prefix; only the SHA-256
# of the whole key is kept. Scopes are canonical JSON lists, NULL meaning unrestricted.
api_keys = Table(
    "api_keys", metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False),
    # Revision 0007_key_owners: the person or system the key belongs to.
    Column("owner", String(128), nullable=False),
    Column("collections", Text),
    Column("policies", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("created_by", String(64)),
    # Revision 0009_sigv4_secrets: the key's SigV4 secret access key, sealed with the
    # server key (faceapi/adapters/secret_box.py), never in clear; NULL for keys made before it.
    Column("sigv4_secret_sealed", Text),
)

# --- Decisions, reviews, lockouts (revision 0004_decisions) ----------------------------
# Ids and scores only: reasons and candidates are canonical JSON text, and review
# evidence (probe image, face crops) lives in the blob store, never in these rows.
decisions = Table(
    "decisions", metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("reasons", Text, nullable=False),
    Column("policy_name", String(64), nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("collection_id", String(128)),
    Column("subject_id", String(128)),
    Column("similarity", Float),
    Column("candidates", Text, nullable=False),
    Column("matched_face_id", String(36)),
    Column("review_id", String(36)),
    Column("requester_key_id", String(64)),
    Column("requester_role", String(16)),
    Column("probe_sha256", String(64)),
    Column("audit_event_id", String(36)),
    Column("request_id", String(128)),
    Column("engine", String(32)),
    Column("model_version", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    # Liveness (migration 0013): whether it was attested, by whom, the token id's hash.
    Column("liveness_status", String(16), nullable=False, server_default="not_required"),
    Column("liveness_issuer", String(256)),
    Column("liveness_jti_sha256", String(64)),
)
Index("ix_decisions_collection_subject", decisions.c.collection_id, decisions.c.subject_id)
Index("ix_decisions_created_at", decisions.c.created_at)
# An attestation is consumed once: at most one attested decision per token id, which
# also decides the race of two requests presenting one token at the same moment.
Index("ux_decisions_liveness_jti", decisions.c.liveness_jti_sha256, unique=True,
      postgresql_where=decisions.c.liveness_status == "attested",
      sqlite_where=decisions.c.liveness_status == "attested")

reviews = Table(
    "reviews", metadata,
    Column("id", String(36), primary_key=True),
    Column("decision_id", String(36), ForeignKey("decisions.id", ondelete="CASCADE"),
           nullable=False),
    Column("kind", String(16), nullable=False),
    Column("policy_name", String(64), nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("collection_id", String(128)),
    Column("subject_id", String(128)),
    Column("requester_key_id", String(64)),
    Column("required_reviewers", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("retention_days", Integer, nullable=False),
    Column("candidates", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("evidence_expires_at", DateTime(timezone=True)),
    Column("evidence_purged", Boolean, nullable=False, default=False),
    Column("flagged", Boolean, nullable=False, default=False),
)
Index("ix_reviews_status_created", reviews.c.status, reviews.c.created_at)
Index("ix_reviews_collection_subject", reviews.c.collection_id, reviews.c.subject_id)
Index("ix_reviews_evidence_expires_at", reviews.c.evidence_expires_at)

# One vote per reviewer key per review: the primary key is what makes "two distinct
# reviewers" hold even when two votes race.
review_votes = Table(
    "review_votes", metadata,
    Column("review_id", String(36), ForeignKey("reviews.id", ondelete="CASCADE"),
           primary_key=True),
    Column("reviewer_key_id", String(64), primary_key=True),
    Column("reviewer_role", String(16), nullable=False),
    Column("vote", String(8), nullable=False),
    Column("reason", String(256), nullable=False),
    Column("face_id", String(36)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Failed-verify throttling per claimed subject and policy (domain/lockout.py); keyed by
# the claimed id, which need not exist, so locks reveal nothing about enrolment.
lockouts = Table(
    "lockouts", metadata,
    Column("collection_id", String(128), primary_key=True),
    Column("subject_id", String(128), primary_key=True),
    Column("policy_name", String(64), primary_key=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("lock_count", Integer, nullable=False, default=0),
    Column("last_failure_at", DateTime(timezone=True)),
    Column("locked_until", DateTime(timezone=True)),
)

# --- Policy versions (revision 0010_consent_expiry) ------------------------------------
# Every policy version a start has loaded, with its canonical text, kept for good: the
# `policy.load` audit event that recorded it carries the version (the text's SHA-256)
# in the hash chain, so the text read back here can be proven (docs/policies.md).
policy_versions = Table(
    "policy_versions", metadata,
    Column("name", String(64), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("canonical_text", Text, nullable=False),
    Column("first_loaded_at", DateTime(timezone=True), nullable=False),
    Column("audit_event_id", String(36), nullable=False),
)


# Idempotency-Key records (services/idempotency.py): one row per (API key, key), holding
# the request's SHA-256 fingerprint, never the request; the saved answer (a JSON
# response body and a few headers) once the request's write has committed. Rows older
# than 24 h are ignored, and deleted by `faceapi retention run`.
idempotency_records = Table(
    "idempotency_records", metadata,
    Column("key_id", String(64), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("claim_token", String(36), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("collection_id", String(128)),
    Column("status", Integer),
    Column("body", Text),
    Column("headers", Text),
)
Index("ix_idempotency_records_created_at", idempotency_records.c.created_at)
Index("ix_idempotency_records_collection_id", idempotency_records.c.collection_id)

# --- Review callbacks (revision 0014_webhooks, docs/webhooks.md) -----------------------
# One webhook per API key: its URL and its HMAC signing secret, sealed with the server
# key like SigV4 secrets (faceapi/adapters/secret_box.py), bound to the key's row.
webhooks = Table(
    "webhooks", metadata,
    Column("key_id", String(16), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("secret_sealed", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64)),
)

# The outbox: one row per final decision to call back, written in the transaction that
# made the decision final. A worker claims a row by setting `lease_until` (a conditional
# UPDATE, so two workers never send one row at once) and records each attempt.
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", String(36), primary_key=True),
    Column("key_id", String(16), nullable=False),
    Column("decision_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_error", String(64)),
)
# One callback per final decision and key, whatever retries the finalising path makes.
Index("ux_webhook_deliveries_decision", webhook_deliveries.c.decision_id,
      webhook_deliveries.c.key_id, unique=True)
Index("ix_webhook_deliveries_due", webhook_deliveries.c.status,
      webhook_deliveries.c.next_attempt_at)
Index("ix_webhook_deliveries_key", webhook_deliveries.c.key_id,
      webhook_deliveries.c.created_at)

# Revision 0015_template_versions: the aligned chip of each face (the descriptor's exact
# input), AES-GCM sealed under the credentials key with the row's ids as associated
# data (adapters/store/chips_repo.py). Biometric: erased with its face, subject and
# collection (services/erase.py's chip eraser), never logged or audited.
face_chips = Table(
    "face_chips", metadata,
    Column("face_id", String(36), primary_key=True),
    Column("collection_id", String(128), nullable=False),
    Column("subject_id", String(128), nullable=False),
    Column("chip_format", String(64), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
)
Index("ix_face_chips_collection_subject", face_chips.c.collection_id, face_chips.c.subject_id)

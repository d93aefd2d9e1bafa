"""Audit events as plain values: the action vocabulary, the actor, the event a service
records, the event as stored (with its place in the hash chain), and the value checks
that keep images, embeddings and API keys out of the trail.

Nothing here touches SQL or Flask; `faceapi/domain/audit_chain.py` hashes, signs and verifies, and
`faceapi/adapters/store/audit_repo.py` writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from faceapi.domain.errors import FaceApiError


class Action(StrEnum):
    """Every action the audit trail knows: the one place to add a new one."""

    FACE_DETECT = "face.detect"
    FACE_COMPARE = "face.compare"
    COLLECTION_CREATE = "collection.create"
    COLLECTION_DELETE = "collection.delete"
    COLLECTION_POLICIES = "collection.policies"
    COLLECTION_REINDEX = "collection.reindex"
    FACE_INDEX = "face.index"
    FACE_DELETE = "face.delete"
    FACE_SEARCH = "face.search"
    SUBJECT_CONSENT = "subject.consent"
    SUBJECT_ERASE = "subject.erase"
    VERIFY_DECISION = "verify.decision"
    SEARCH_DECISION = "search.decision"
    REVIEW_CREATE = "review.create"
    REVIEW_DECISION = "review.decision"
    REVIEW_EXPIRE = "review.expire"
    REVIEW_EVIDENCE_PURGE = "review.evidence_purge"
    REVIEW_EVIDENCE_VIEW = "review.evidence_view"
    IMPORT_RUN = "import.run"
    AUTH_FAIL = "auth.fail"
    AUTHZ_DENY = "authz.deny"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"
    LOCKOUT_LOCK = "lockout.lock"
    LOCKOUT_UNLOCK = "lockout.unlock"
    POLICY_LOAD = "policy.load"
    POLICY_CALIBRATE = "policy.calibrate"
    AUDIT_EXPORT = "audit.export"
    AUDIT_VERIFY = "audit.verify"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    AUDIT_SIGNING_KEY_ROTATED = "audit.signing_key.rotated"
    RETENTION_RUN = "retention.run"
    WEBHOOK_REGISTER = "webhook.register"
    WEBHOOK_DELETE = "webhook.delete"
    WEBHOOK_DELIVERY = "webhook.delivery"


ROLES = frozenset({"app", "operator", "reviewer", "auditor", "admin", "system", "none"})


@dataclass(frozen=True)
class Actor:
    """Who caused an event: an API key (id and role), a job (`system`), or nobody
    authenticated (`none`) before access control is in place."""

    role: str
    key_id: str | None = None

    @classmethod
    def system(cls, job: str | None = None) -> Actor:
        return cls(role="system", key_id=job)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls(role="none", key_id="anonymous")


SYSTEM = Actor.system()
ANONYMOUS = Actor.anonymous()

Scalar = str | int | float | bool | None
DetailValue = Scalar | Sequence[Scalar]


@dataclass(frozen=True)
class AuditEvent:
    """What a service records. Sequence, id, time and hashes are added on append.

    `scores` holds numbers only (similarity, face_count, threshold ...); `details`
    holds a few short scalars (ids, counts, flags); `input_digests` holds SHA-256 hex
    digests of input images, never the images."""

    action: Action
    outcome: str
    actor: Actor
    resource: str | None = None
    subject_id: str | None = None
    policy_name: str | None = None
    policy_version: str | None = None
    engine: str | None = None
    model_version: str | None = None
    scores: Mapping[str, float | int | bool | None] = field(default_factory=dict)
    input_digests: tuple[str, ...] = ()
    request_id: str | None = None
    reason: str | None = None
    details: Mapping[str, DetailValue] = field(default_factory=dict)


GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: its position in the chain and the hashes that bind it."""

    seq: int
    id: str
    time: datetime
    event: AuditEvent
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Checkpoint:
    """A signature over the chain head at `seq`, made with the audit signing key."""

    seq: int
    event_hash: str
    created_at: datetime
    key_id: str
    signature: str  # base64 Ed25519 signature of the canonical checkpoint payload


@dataclass(frozen=True)
class AuditQuery:
    """Filters for listing and exporting; every field narrows the result."""

    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    actor_key_id: str | None = None
    actor_role: str | None = None
    actions: tuple[str, ...] = ()
    outcome: str | None = None
    policy_name: str | None = None
    resource: str | None = None  # exact, or a parent: "collections/c1" matches "collections/c1/..."
    subject_id: str | None = None
    request_id: str | None = None
    newest_first: bool = True
    after_seq: int | None = None  # keyset cursor: continue past this sequence number
    until_seq: int | None = None  # inclusive; an export pins the head it started at
    # The reader's scope (faceapi/domain/access.py, can_read_event): None is no limit; a
    # limit keeps only events naming a collection (policy) inside it.
    scope_collections: frozenset[str] | None = None
    scope_policies: frozenset[str] | None = None

    @property
    def is_scoped(self) -> bool:
        """Whether the reader's scope hides part of the trail."""
        return self.scope_collections is not None or self.scope_policies is not None

    @property
    def is_filtered(self) -> bool:
        """Whether any filter narrows the trail (an export of it is not the whole chain)."""
        return self.is_scoped or any(v not in (None, ()) for v in (
            self.since, self.until, self.actor_key_id, self.actor_role, self.actions,
            self.outcome, self.policy_name, self.resource, self.subject_id, self.request_id))


class InvalidAuditEvent(FaceApiError):
    """A service tried to record a value the audit trail refuses (a bug, not bad input)."""

    code = "invalid_audit_event"


# Why these limits: every text field is short enough that no image (kilobytes) or
# embedding (128 float32 = 684 base64 chars) fits, and values that look like encoded
# binary or API keys are refused outright rather than trusted to the limits alone.
MAX_TEXT = 256
MAX_MAP_ENTRIES = 16
MAX_LIST_ITEMS = 16
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_OUTCOME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# The access-control work issues keys shaped fa_<prefix>_<secret>.
API_KEY_RE = re.compile(r"fa_[A-Za-z0-9]{6,}_[A-Za-z0-9_-]{20,}")
_B64_RUN_RE = re.compile(r"[A-Za-z0-9+/=_-]{64,}")
_DATA_URI_RE = re.compile(r"data:[a-z]+/[a-z0-9.+-]+;base64", re.IGNORECASE)


def _looks_encoded(run: str) -> bool:
    # Ids, paths and hex digests are long runs too; encoded binary mixes upper case,
    # lower case and digits, which those do not.
    return (any(c.isupper() for c in run) and any(c.islower() for c in run)
            and any(c.isdigit() for c in run))


def check_text(name: str, value: str, *, limit: int = MAX_TEXT) -> None:
    """Refuse a string that is too long or could carry binary data or a secret."""
    if not isinstance(value, str):
        raise InvalidAuditEvent(f"audit field {name}: expected text")
    if len(value) > limit:
        raise InvalidAuditEvent(f"audit field {name}: longer than {limit} characters")
    if _CONTROL_RE.search(value):
        raise InvalidAuditEvent(f"audit field {name}: control characters")
    if API_KEY_RE.search(value):
        raise InvalidAuditEvent(f"audit field {name}: looks like an API key")
    if _DATA_URI_RE.search(value) or any(_looks_encoded(m) for m in _B64_RUN_RE.findall(value)):
        raise InvalidAuditEvent(f"audit field {name}: looks like encoded binary data")


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise InvalidAuditEvent(f"audit field {name}: integer out of range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidAuditEvent(f"audit field {name}: not a finite number")
        return
    raise InvalidAuditEvent(f"audit field {name}: expected a number")


def _check_scalar(name: str, value: object) -> None:
    if isinstance(value, str):
        check_text(name, value)
    else:
        _check_number(name, value)


def _check_map_keys(name: str, mapping: Mapping[str, object]) -> None:
    if not isinstance(mapping, Mapping):
        raise InvalidAuditEvent(f"audit field {name}: expected a mapping")
    if len(mapping) > MAX_MAP_ENTRIES:
        raise InvalidAuditEvent(f"audit field {name}: more than {MAX_MAP_ENTRIES} entries")
    for key in mapping:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise InvalidAuditEvent(f"audit field {name}: bad key {str(key)[:40]!r}")


def validate_event(event: AuditEvent) -> None:
    """Schema check of every value before it is written; raises InvalidAuditEvent."""
    if not isinstance(event.action, Action):
        raise InvalidAuditEvent(f"audit action {event.action!r} is not in the vocabulary")
    if not isinstance(event.outcome, str) or not _OUTCOME_RE.match(event.outcome):
        raise InvalidAuditEvent("audit outcome: expected a short snake_case word")
    if event.actor.role not in ROLES:
        raise InvalidAuditEvent(f"audit actor role {event.actor.role!r} is unknown")
    if event.actor.key_id is not None:
        if not isinstance(event.actor.key_id, str) or not _KEY_ID_RE.match(event.actor.key_id):
            raise InvalidAuditEvent("audit actor key id: expected a short id, never a key")
        check_text("actor.key_id", event.actor.key_id, limit=64)
    for name, limit in (("resource", MAX_TEXT), ("subject_id", 128), ("policy_name", 64),
                        ("engine", 32), ("model_version", 128), ("request_id", 128),
                        ("reason", MAX_TEXT)):
        value = getattr(event, name)
        if value is not None:
            check_text(name, value, limit=limit)
    if event.policy_version is not None and not _HEX64_RE.match(event.policy_version):
        raise InvalidAuditEvent("audit policy_version: expected a SHA-256 hex digest")
    if not isinstance(event.input_digests, tuple) or len(event.input_digests) > 8:
        raise InvalidAuditEvent("audit input_digests: expected a tuple of at most 8 digests")
    for digest in event.input_digests:
        if not isinstance(digest, str) or not _HEX64_RE.match(digest):
            raise InvalidAuditEvent("audit input_digests: expected SHA-256 hex digests")
    _check_map_keys("scores", event.scores)
    for key, score in event.scores.items():
        _check_number(f"scores.{key}", score)
    _check_map_keys("details", event.details)
    for key, value in event.details.items():
        if isinstance(value, (list, tuple)):
            # A list of >16 numbers is how an embedding would sneak in.
            if len(value) > MAX_LIST_ITEMS:
                raise InvalidAuditEvent(
                    f"audit field details.{key}: more than {MAX_LIST_ITEMS} items")
            for item in value:
                _check_scalar(f"details.{key}", item)
        else:
            _check_scalar(f"details.{key}", value)

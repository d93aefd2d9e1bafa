"""Access control as plain data: roles, the authenticated actor, the one permission
table (Flask endpoint name -> who may call it) and the object-level scope checks.

Deny by default: an endpoint missing from `PERMISSIONS` is refused for everyone, and
tests/unit/test_access_table.py walks the app's URL map so a new endpoint that nobody
added here fails the build instead of shipping unprotected.

No Flask here: the API layer (faceapi/entrypoints/web/api/auth.py) looks rules up by endpoint name;
services call `require_collection_access` / `require_policy_access` / `require_role`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from faceapi.domain import audit
from faceapi.domain.errors import FaceApiError, NotFound

APP = "app"
OPERATOR = "operator"
REVIEWER = "reviewer"
AUDITOR = "auditor"
ADMIN = "admin"

# The roles an API key can hold, in the order docs and the CLI list them.
ROLES: tuple[str, ...] = (APP, OPERATOR, REVIEWER, AUDITOR, ADMIN)
ALL_ROLES = frozenset(ROLES)


@dataclass(frozen=True)
class Actor(audit.Actor):
    """The caller of one request: an API key's id and role plus its scope.

    It *is* an audit Actor (same `role` and `key_id`, which is all the audit trail
    records), so services pass it straight into audit events. `collections` and
    `policies` are the key's scope: None means "not restricted".
    """

    name: str = ""
    collections: frozenset[str] | None = None
    policies: frozenset[str] | None = None
    # The person or system the key belongs to: the two-person rule counts owners.
    owner: str = ""

    def audit_actor(self) -> audit.Actor:
        """The plain (role, key id) pair, e.g. for code that compares actors by value."""
        return audit.Actor(role=self.role, key_id=self.key_id)


class Access(Enum):
    """Rules for endpoints that are not a set of roles."""

    # No key needed: liveness/readiness probes and the API description.
    PUBLIC = "public"
    # The web console authenticates with its own session cookie (faceapi/entrypoints/web/console/),
    # exchanging an API key through faceapi.services.keys.authenticate.
    CONSOLE = "console"


@dataclass(frozen=True)
class ConsolePage:
    """A console page: the console's session (not the API hook) authenticates, and
    these roles may open it. Same table, same rules, other transport."""

    roles: frozenset[str]


Rule = frozenset[str] | Access | ConsolePage

_OPERATOR_PLUS = frozenset({OPERATOR, ADMIN})

# Endpoint name (blueprint.view_function) -> the roles that may call it.
# Keep it sorted by blueprint; the reason for each non-obvious choice is beside it.
PERMISSIONS: dict[str, Rule] = {
    # system: probes and docs stay open so load balancers and readers need no key.
    "system.healthz": Access.PUBLIC,
    "system.readyz": Access.PUBLIC,
    "system.docs_page": Access.PUBLIC,
    "api-docs.openapi_json": Access.PUBLIC,
    # Flask's own static route; the app serves no files there.
    "static": Access.PUBLIC,
    # Prometheus metrics: counts and timings by route, stage, policy and outcome, no
    # personal data; the compliance readers and admins. A scraper that should hold no
    # key uses the separate metrics address instead (FACEAPI_METRICS_BIND).
    "metrics.scrape": frozenset({AUDITOR, ADMIN}),
    # Engine facts reveal the model version only: any key may read them.
    "system.engine_info": ALL_ROLES,
    # What a similarity threshold means (measured FMR/FNMR per threshold, pair
    # histograms): operators tune policies with it, auditors check them.
    "system.engine_calibration": frozenset({OPERATOR, AUDITOR, ADMIN}),
    # Stateless analysis: apps, and operators checking an image before enrolling it.
    "faces.detect_faces": frozenset({APP, OPERATOR, ADMIN}),
    "faces.compare_faces": frozenset({APP, OPERATOR, ADMIN}),
    # API keys are the admin's alone.
    "keys.create_key": frozenset({ADMIN}),
    "keys.list_keys": frozenset({ADMIN}),
    "keys.get_key": frozenset({ADMIN}),
    "keys.revoke_key": frozenset({ADMIN}),
    # Any key may read its own record (role, scope, expiry), never another's.
    "keys.get_own_key": ALL_ROLES,
    # Policies are not secret: every role may read the rules decisions are made under.
    "policies.list_policies": ALL_ROLES,
    "policies.get_policy": ALL_ROLES,
    # Past versions' texts are the compliance record of what a decision ran under: the
    # auditors and admins who check decisions, and reviewers, whose review items name a
    # version. Apps and operators work under the policies in force (read above).
    "policies.get_policy_version": frozenset({REVIEWER, AUDITOR, ADMIN}),
    # Decisions about people are requested by apps only.
    "verify.verify_subject": frozenset({APP}),
    "search.search_faces_by_image": frozenset({APP}),
    # REST SearchFaces (a face of the collection is the probe), under a named policy.
    "collections.search_by_face_id": frozenset({APP}),
    # Comparing two images under a policy (dataset cleaning) decides about no enrolled
    # subject: apps and the operators who curate data sets.
    "verify.compare_pair": frozenset({APP, OPERATOR, ADMIN}),
    # Apps read their own decisions (the service checks the requester key).
    "verify.get_decision_view": frozenset({APP, REVIEWER, AUDITOR, ADMIN}),
    # Review callbacks: a key manages its own webhook and reads its own delivery log
    # (/v1/webhook names no other key); the roles that can request decisions.
    "webhooks.put_webhook": frozenset({APP, OPERATOR, ADMIN}),
    "webhooks.get_webhook": frozenset({APP, OPERATOR, ADMIN}),
    "webhooks.delete_webhook": frozenset({APP, OPERATOR, ADMIN}),
    "webhooks.list_webhook_deliveries": frozenset({APP, OPERATOR, ADMIN}),
    # The review queue and its evidence images are the reviewers' alone.
    "reviews.list_review_queue": frozenset({REVIEWER}),
    "reviews.get_review_item": frozenset({REVIEWER}),
    "reviews.get_review_evidence": frozenset({REVIEWER}),
    "reviews.decide_review_item": frozenset({REVIEWER}),
    # Collections, faces, subjects, consent and erasure: operators manage enrollment;
    # apps never do (they decide through verify and search under a policy).
    "collections.create_collection": _OPERATOR_PLUS,
    "collections.list_collections": _OPERATOR_PLUS,
    "collections.describe_collection": _OPERATOR_PLUS,
    "collections.delete_collection": _OPERATOR_PLUS,
    "collections.set_collection_policies": frozenset({ADMIN}),  # unscoped only (service)
    "collections.index_collection_faces": _OPERATOR_PLUS,
    "collections.list_faces": _OPERATOR_PLUS,
    "collections.delete_faces": _OPERATOR_PLUS,
    "collections.get_subject": _OPERATOR_PLUS,
    "collections.erase_collection_subject": _OPERATOR_PLUS,
    "collections.record_subject_consent": _OPERATOR_PLUS,
    "lockouts.get_lockout": _OPERATOR_PLUS,
    "lockouts.unlock_subject": _OPERATOR_PLUS,
    # The compliance API: auditors read, verify and export; admins may too.
    "audit.list_events": frozenset({AUDITOR, ADMIN}),
    "audit.get_event": frozenset({AUDITOR, ADMIN}),
    "audit.verify_chain": frozenset({AUDITOR, ADMIN}),
    "audit.export_events": frozenset({AUDITOR, ADMIN}),
    "audit.list_checkpoints": frozenset({AUDITOR, ADMIN}),
    "audit.create_checkpoint": frozenset({AUDITOR, ADMIN}),
    "audit.public_key": frozenset({AUDITOR, ADMIN}),
    # The Rekognition-compatible endpoint: one URL for every operation, so the view
    # checks the operation's roles (REKOGNITION_OPERATIONS below) with require_role.
    "rekognition.dispatch": ALL_ROLES,
    # Console: signing in and out and its static files need no session; the console
    # blueprint authenticates everything else with its session cookie.
    "console.signin": Access.CONSOLE,
    "console.signout": Access.CONSOLE,
    "console.static": Access.CONSOLE,
    "console.home": ConsolePage(ALL_ROLES),
    "console.overview": ConsolePage(ALL_ROLES),
    "console.policies": ConsolePage(ALL_ROLES),
    "console.audit": ConsolePage(frozenset({AUDITOR, ADMIN})),
    "console.audit_event": ConsolePage(frozenset({AUDITOR, ADMIN})),
    "console.audit_verify": ConsolePage(frozenset({AUDITOR, ADMIN})),
    "console.audit_export": ConsolePage(frozenset({AUDITOR, ADMIN})),
    # Review queue: the roles of reviews.* above.
    "console.reviews": ConsolePage(frozenset({REVIEWER})),
    "console.review": ConsolePage(frozenset({REVIEWER})),
    "console.review_evidence": ConsolePage(frozenset({REVIEWER})),
    "console.review_decide": ConsolePage(frozenset({REVIEWER})),
    # Collections, subjects, erasure and unlock: the operator's (and admin's) API.
    "console.collections": ConsolePage(_OPERATOR_PLUS),
    "console.collection": ConsolePage(_OPERATOR_PLUS),
    "console.subject": ConsolePage(_OPERATOR_PLUS),
    "console.subject_erase": ConsolePage(_OPERATOR_PLUS),
    "console.subject_unlock": ConsolePage(_OPERATOR_PLUS),
    # The engine's similarity calibration: operators set thresholds from it, auditors
    # check what a threshold means; it holds no biometric data, only pair statistics.
    "console.calibration": ConsolePage(frozenset({OPERATOR, AUDITOR, ADMIN})),
    "console.calibration_plot": ConsolePage(frozenset({OPERATOR, AUDITOR, ADMIN})),
}


# Operations of the Rekognition-compatible endpoint (POST / with X-Amz-Target) -> roles.
# Unknown operations: nobody. Analysis matches /v1/faces. Searches decide under the
# collection's bound search policy (its review included) but name no policy, so they
# are operators' tools (deduplication, checks); apps search through /v1 under a policy.
REKOGNITION_OPERATIONS: dict[str, frozenset[str]] = {
    "DetectFaces": frozenset({APP, OPERATOR, ADMIN}),
    "CompareFaces": frozenset({APP, OPERATOR, ADMIN}),
    "CreateCollection": _OPERATOR_PLUS,
    "DeleteCollection": _OPERATOR_PLUS,
    "DescribeCollection": _OPERATOR_PLUS,
    "ListCollections": _OPERATOR_PLUS,
    "IndexFaces": _OPERATOR_PLUS,
    "ListFaces": _OPERATOR_PLUS,
    "DeleteFaces": _OPERATOR_PLUS,
    "SearchFacesByImage": _OPERATOR_PLUS,
    "SearchFaces": _OPERATOR_PLUS,
}

# The console's view of the table (faceapi/entrypoints/web/console/access.py reads it).
CONSOLE_PAGES: dict[str, frozenset[str]] = {
    endpoint: rule.roles for endpoint, rule in PERMISSIONS.items()
    if isinstance(rule, ConsolePage)
}


def rule_for(endpoint: str | None) -> Rule | None:
    """The rule for an endpoint, or None when it is not in the table (deny)."""
    if endpoint is None:
        return None
    return PERMISSIONS.get(endpoint)


def roles_allowed(endpoint: str) -> frozenset[str]:
    """The roles that may call an endpoint (empty for public or unknown ones)."""
    rule = PERMISSIONS.get(endpoint)
    if isinstance(rule, ConsolePage):
        return rule.roles
    return rule if isinstance(rule, frozenset) else frozenset()


class Forbidden(FaceApiError):
    """The caller is known but may not do this."""

    code = "forbidden"


class OutOfScope(NotFound):
    """A resource outside the key's scope. It answers exactly like a missing one (404,
    same code and message) so a key cannot learn what exists beyond its scope; the API
    layer records it as `authz.deny` in the audit trail."""


def collection_not_found_message(collection_id: str) -> str:
    """The one message for "no such collection", shared with the collections service so
    that an out-of-scope collection is indistinguishable from a missing one."""
    return f"collection {collection_id!r} not found"


def _scope(actor: audit.Actor, name: str) -> frozenset[str] | None:
    # Plain audit actors are jobs and the CLI (role "system"): trusted, unscoped.
    return getattr(actor, name, None) if isinstance(actor, Actor) else None


def can_access_collection(actor: audit.Actor, collection_id: str) -> bool:
    """Whether the actor's scope includes this collection (for filtering lists)."""
    if actor.role == "none":
        return False
    scope = _scope(actor, "collections")
    return scope is None or collection_id in scope


def collection_filter(actor: audit.Actor) -> frozenset[str] | None:
    """The collection ids a listing must be limited to, or None for no limit."""
    if actor.role == "none":
        return frozenset()
    return _scope(actor, "collections")


def require_collection_access(actor: audit.Actor, collection_id: str) -> None:
    """Raise OutOfScope (a 404, like a missing collection) unless the actor's scope
    includes the collection. Call it for every collection, face, subject, review and
    decision a request names, before revealing anything about it."""
    if not can_access_collection(actor, collection_id):
        raise OutOfScope(collection_not_found_message(collection_id),
                         details={"collection_id": collection_id})


def can_use_policy(actor: audit.Actor, policy_name: str) -> bool:
    if actor.role == "none":
        return False
    scope = _scope(actor, "policies")
    return scope is None or policy_name in scope


def require_policy_access(actor: audit.Actor, policy_name: str) -> None:
    """Raise Forbidden (403) unless the key may decide under this policy. Policies are
    not secret (GET /v1/policies lists them), so refusing openly reveals nothing."""
    if not can_use_policy(actor, policy_name):
        raise Forbidden(f"this API key may not use policy {policy_name!r}",
                        details={"policy": policy_name})


# --- Read scopes: what a scoped key may read of the audit trail and the review queue ---
# A key limited in a dimension (collections or policies) reads only what names something
# inside that limit: a record naming no collection (key management, system jobs, a
# stateless compare) or no policy is outside every limit of that dimension.

def policy_filter(actor: audit.Actor) -> frozenset[str] | None:
    """The policy names a listing must be limited to, or None for no limit."""
    if actor.role == "none":
        return frozenset()
    return _scope(actor, "policies")


def _inside(limit: frozenset[str] | None, name: str | None) -> bool:
    return limit is None or (name is not None and name in limit)


def can_read(actor: audit.Actor, collection_id: str | None, policy_name: str | None) -> bool:
    """Whether a record attributed to this collection and policy (None: none) is inside
    the actor's read scope."""
    return (_inside(collection_filter(actor), collection_id)
            and _inside(policy_filter(actor), policy_name))


def can_read_decision(actor: audit.Actor, requester_key_id: str | None,
                      collection_id: str | None, policy_name: str | None) -> bool:
    """GET /v1/decisions/{id}: apps read their own decisions only; other roles those
    their scope covers (a compare names no collection: collection-scoped keys do not see
    it). The review callbacks send a decision to its requester under the same rule."""
    if actor.role == APP:
        return requester_key_id is not None and requester_key_id == actor.key_id
    return can_read(actor, collection_id, policy_name)


def collection_named(resource: str | None, details: Mapping[str, object]) -> str | None:
    """The collection an audit event belongs to, read from its hashed content: its
    resource `collections/<id>[/...]`, else a `collection_id` among its details. The
    store keeps it in a column at append, so every writer gets it the same way."""
    if resource is not None and resource.startswith("collections/"):
        collection_id = resource.split("/", 2)[1]
        if collection_id:
            return collection_id
    named = details.get("collection_id")
    return named if isinstance(named, str) and named else None


def event_collection(event: audit.AuditEvent) -> str | None:
    """collection_named of an event."""
    return collection_named(event.resource, event.details)


def can_read_event(actor: audit.Actor, event: audit.AuditEvent) -> bool:
    """Whether the actor's scope covers an audit event (its collection and policy)."""
    return can_read(actor, event_collection(event), event.policy_name)


def out_of_scope_like(missing: FaceApiError) -> OutOfScope:
    """An OutOfScope refusal that answers exactly as `missing` does (same code, message
    and details), so the API audits it while the caller learns nothing."""
    refusal = OutOfScope(missing.message, details=dict(missing.details))
    refusal.code = missing.code
    return refusal


def require_role(actor: audit.Actor, roles: Iterable[str]) -> None:
    """Raise Forbidden unless the actor holds one of `roles` (for views whose rule
    depends on the request body, such as the Rekognition-compatible endpoint)."""
    allowed = frozenset(roles)
    if actor.role not in allowed:
        raise Forbidden("this API key's role may not do this",
                        details={"role": actor.role, "allowed_roles": sorted(allowed)})


def check_scope_names(names: Iterable[str], *, what: str) -> frozenset[str]:
    """Validate collection or policy names given as a key's scope."""
    cleaned = frozenset(n.strip() for n in names if n.strip())
    for name in cleaned:
        if len(name) > 128 or any(c.isspace() or c == "," for c in name):
            raise InvalidScope(f"{what} scope entry {name[:40]!r} is not a valid name",
                               details={"field": what})
    return cleaned


class InvalidScope(FaceApiError):
    code = "validation_error"


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: never the key itself, only its SHA-256.

    `id` is the key's public prefix (the 8 characters after `fa_`): it names the key in
    lists, logs and the audit trail and is how a presented key is looked up."""

    id: str
    name: str
    role: str
    key_hash: str
    created_at: datetime
    # The person or system the key belongs to (`alice@example.org`, `system:billing`):
    # one owner holding two reviewer keys is still one reviewer.
    owner: str
    collections: frozenset[str] | None = None
    policies: frozenset[str] | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    created_by: str | None = None

    def status(self, now: datetime) -> str:
        """active | revoked | expired."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def actor(self) -> Actor:
        return Actor(role=self.role, key_id=self.id, name=self.name,
                     collections=self.collections, policies=self.policies, owner=self.owner)

    @property
    def unscoped(self) -> bool:
        """No collection and no policy limit: the keys only an unscoped admin manages."""
        return self.collections is None and self.policies is None



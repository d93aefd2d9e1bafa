"""The console's bridge to access control: sign-in through the keys service, the role
rules from the one permission table, and audit events for refused sign-ins and pages."""

from __future__ import annotations

import structlog

from faceapi.domain import access as rules
from faceapi.domain.access import Actor
from faceapi.domain.audit import Action
from faceapi.domain.audit import Actor as AuditActor
from faceapi.domain.errors import NotFound
from faceapi.entrypoints.web.api.auth import record_auth_failure, record_refusal
from faceapi.entrypoints.web.api.deps import container, use_cases
from faceapi.services import keys

log = structlog.get_logger(__name__)

CONSOLE_ACTOR = AuditActor.system("console")


def allowed(role: str, endpoint: str) -> bool:
    """Deny by default: an endpoint missing from the table opens for nobody."""
    return role in rules.CONSOLE_PAGES.get(endpoint, frozenset())


def needs_no_session(endpoint: str) -> bool:
    return rules.rule_for(endpoint) is rules.Access.CONSOLE


def authenticate(raw_key: str) -> Actor | None:
    """The key's actor if the keys service accepts it (known, not revoked, not
    expired); a refusal is an `auth.fail` event, as for the API."""
    try:
        return use_cases().authenticate(raw_key)
    except keys.AuthenticationFailed as exc:
        log.warning("console_auth_fail", reason=exc.reason, key_id=exc.key_id)
        record_auth_failure(exc, "console.signin", details={"channel": "console"})
        return None


def record_malformed_signin(reason: str) -> None:
    """A sign-in form refused before its key is tried (a NUL in a field) is an
    `auth.fail` event all the same: every refused sign-in is on record."""
    log.warning("console_auth_fail", reason=reason, key_id=None)
    record_auth_failure(keys.AuthenticationFailed(reason), "console.signin",
                        details={"channel": "console"})


def reload_principal(key_id: str) -> Actor | None:
    """The key's actor again for a live session, or None once the key was revoked or
    expired: revoking a key ends its console sessions on the next click."""
    try:
        # The session's own key: read as the console itself, not through a key's scope.
        key = use_cases().get_key(key_id, actor=CONSOLE_ACTOR)
    except NotFound:
        return None
    if key.status(container().clock.now()) != "active":
        return None
    return key.actor()


def record_denial(who: Actor, endpoint: str) -> None:
    """A page the role may not open is an `authz.deny` event, as for the API."""
    log.warning("authz_deny", reason="role_not_allowed", endpoint=endpoint,
                key_id=who.key_id, role=who.role)
    record_refusal(Action.AUTHZ_DENY, "denied", who, endpoint, reason="role_not_allowed",
                   details={"channel": "console"})


def record_out_of_scope(who: Actor, endpoint: str, details: dict[str, object]) -> None:
    """An object outside the key's scope (shown as missing) is an `authz.deny` event,
    as for the API."""
    log.warning("authz_deny", reason="out_of_scope", endpoint=endpoint, key_id=who.key_id,
                role=who.role)
    record_refusal(Action.AUTHZ_DENY, "out_of_scope", who, endpoint, reason="out_of_scope",
                   details={"channel": "console",
                            **{k: v for k, v in details.items() if isinstance(v, str)}})

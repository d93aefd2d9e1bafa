"""The console's bridge to access control: sign-in through the keys service, the role
rules from the one permission table, and audit events for refused sign-ins and pages."""

from __future__ import annotations

from typing import Any

import structlog
from flask import request

from faceapi.api.deps import deps, request_id
from faceapi.domain import access as rules
from faceapi.domain.access import Actor
from faceapi.domain.audit import ANONYMOUS, Action, AuditEvent, check_text
from faceapi.domain.audit import Actor as AuditActor
from faceapi.domain.errors import NotFound
from faceapi.services import audit_trail, keys

log = structlog.get_logger(__name__)


def allowed(role: str, endpoint: str) -> bool:
    """Deny by default: an endpoint missing from the table opens for nobody."""
    return role in rules.CONSOLE_PAGES.get(endpoint, frozenset())


def needs_no_session(endpoint: str) -> bool:
    return rules.rule_for(endpoint) is rules.Access.CONSOLE


def authenticate(raw_key: str) -> Actor | None:
    """The key's actor if the keys service accepts it (known, not revoked, not
    expired); a refusal is an `auth.fail` event, as for the API."""
    d = deps()
    try:
        return keys.authenticate(raw_key, read_uow=d.store.read_uow, write_uow=d.store.uow,
                                 clock=d.clock)
    except keys.AuthenticationFailed as exc:
        actor = (AuditActor(role=exc.role, key_id=exc.key_id)
                 if exc.role is not None and exc.key_id is not None else ANONYMOUS)
        log.warning("console_auth_fail", reason=exc.reason, key_id=exc.key_id)
        details: dict[str, Any] = {"channel": "console"}
        if exc.key_id is not None and actor is ANONYMOUS:
            details["presented_key_id"] = exc.key_id
        _record(Action.AUTH_FAIL, actor, "console.signin", exc.reason, details)
        return None


def reload_principal(key_id: str) -> Actor | None:
    """The key's actor again for a live session, or None once the key was revoked or
    expired: revoking a key ends its console sessions on the next click."""
    d = deps()
    try:
        key = keys.get_key(key_id, uow=d.store.read_uow())
    except NotFound:
        return None
    if key.status(d.clock.now()) != "active":
        return None
    return key.actor()


def record_denial(who: Actor, endpoint: str) -> None:
    """A page the role may not open is an `authz.deny` event, as for the API."""
    log.warning("authz_deny", reason="role_not_allowed", endpoint=endpoint,
                key_id=who.key_id, role=who.role)
    _record(Action.AUTHZ_DENY, who, endpoint, "role_not_allowed", {"channel": "console"})


def _record(action: Action, actor: AuditActor, endpoint: str, reason: str,
            details: dict[str, Any]) -> None:
    # Its own transaction; a failed write is logged, the visitor is refused either way.
    path = request.path[:200]
    try:
        check_text("path", path)
        details = {**details, "method": request.method, "path": path}
    except Exception:
        details = {**details, "method": request.method}
    try:
        audit_trail.record(AuditEvent(action=action, outcome="denied", actor=actor,
                                      resource=f"endpoint/{endpoint}",
                                      request_id=request_id() or None, reason=reason,
                                      details=details), uow=deps().store.uow())
    except Exception:
        log.exception("console_audit_failed", action=action.value)

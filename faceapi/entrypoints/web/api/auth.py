"""Authentication and authorisation at the edge: one before_request hook.

Every request to an endpoint the permission table (faceapi/domain/access.py) does not
mark PUBLIC or CONSOLE must carry `Authorization: Bearer fa_<id>_<secret>` (the
Rekognition-compatible endpoint alone takes an AWS SigV4 signature instead, checked by
faceapi/entrypoints/web/api/sigv4.py, and a SigV4 header anywhere else is refused); the key
becomes an Actor in `flask.g.actor` (read it with `api.deps.current_actor()`).
Every refusal (401, 403, and the 404 of an out-of-scope object) is written to the audit
trail in its own transaction and logged, with the key's public id only, never the key.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import structlog
from flask import Flask, Response, g, request

from faceapi.domain import access
from faceapi.domain.audit import (
    ANONYMOUS,
    Action,
    AuditEvent,
    InvalidAuditEvent,
    check_text,
    validate_event,
)
from faceapi.domain.audit import Actor as AuditActor
from faceapi.domain.sigv4 import is_sigv4
from faceapi.entrypoints.web.api import sigv4
from faceapi.entrypoints.web.api.deps import request_id, use_cases
from faceapi.entrypoints.web.api.errors import error_response
from faceapi.services.keys import AuthenticationFailed

log = structlog.get_logger(__name__)

_BEARER_RE = re.compile(r"^Bearer[ \t]+(\S+)[ \t]*$", re.IGNORECASE)
WWW_AUTHENTICATE = 'Bearer realm="faceapi"'

_MESSAGES = {
    "revoked": "this API key has been revoked",
    "expired": "this API key has expired",
    "sigv4_not_accepted": "AWS SigV4 is accepted by the Rekognition-compatible endpoint "
                          "only; send `Authorization: Bearer <key>`",
}


def presented_key() -> str | None:
    """The Bearer key sent with this request, if any (never a SigV4 access key id: a
    signature, not the id, is what authenticates there)."""
    match = _BEARER_RE.match(request.headers.get("Authorization", ""))
    return match.group(1) if match else None


def actor_for_key(token: str | None) -> access.Actor:
    """Authenticate a key against the store; raises AuthenticationFailed."""
    return use_cases().authenticate(token)


def register_auth(app: Flask) -> None:
    """Install the hook and the handlers that audit refusals raised by services.
    Register after request logging (so refusals carry the request id) and after the
    rate limiter (so key guessing is rate limited before any store work)."""
    app.before_request(_authenticate_request)
    app.register_error_handler(access.Forbidden, _handle_forbidden)
    app.register_error_handler(access.OutOfScope, _handle_out_of_scope)
    app.after_request(_audit_other_refusals)


def _authenticate_request() -> Response | None:
    # CORS preflights carry no credentials by design; Flask answers them itself.
    if request.method == "OPTIONS":
        return None
    endpoint = request.endpoint
    if endpoint is None:
        # No route matched: Flask answers 404/405 and nothing else runs.
        return None
    rule = access.rule_for(endpoint)
    if isinstance(rule, (access.Access, access.ConsolePage)):
        # Open, or the console's session guard (faceapi/entrypoints/web/console/views.py) decides.
        return None
    try:
        if endpoint == sigv4.ENDPOINT:
            actor = sigv4.authenticate_request()
        elif is_sigv4(request.headers.get("Authorization", "")):
            raise AuthenticationFailed("sigv4_not_accepted")
        else:
            actor = actor_for_key(presented_key())
    except AuthenticationFailed as exc:
        return _refuse_unauthenticated(exc, endpoint)
    g.actor = actor
    structlog.contextvars.bind_contextvars(actor_key_id=actor.key_id, actor_role=actor.role)
    if rule is None:
        # Deny by default; the URL-map test should have caught this before release.
        log.error("endpoint_not_in_permission_table", endpoint=endpoint)
        return _refuse_forbidden(actor, endpoint, "endpoint_not_in_permission_table",
                                 "this endpoint is not open to any role")
    if actor.role not in rule:
        return _refuse_forbidden(actor, endpoint, "role_not_allowed",
                                 f"role {actor.role!r} may not call this endpoint")
    return None


def record_auth_failure(exc: AuthenticationFailed, endpoint: str,
                       details: dict[str, Any]) -> None:
    """The `auth.fail` event of a refused key (API or console sign-in): the key's own
    actor when it is known (revoked, expired), else anonymous with the id presented."""
    actor = (AuditActor(role=exc.role, key_id=exc.key_id)
             if exc.role is not None and exc.key_id is not None else ANONYMOUS)
    if exc.key_id is not None and actor is ANONYMOUS:
        details = {**details, "presented_key_id": exc.key_id}
    record_refusal(Action.AUTH_FAIL, "denied", actor, endpoint, reason=exc.reason, details=details)


def _refuse_unauthenticated(exc: AuthenticationFailed, endpoint: str) -> Response:
    log.warning("auth_fail", reason=exc.reason, endpoint=endpoint, key_id=exc.key_id)
    record_auth_failure(exc, endpoint, details={})
    # `unauthorized`, or the SigV4 refusal's own code (the emulator answers it with
    # AWS's exception name).
    response = error_response(exc.code, _MESSAGES.get(exc.reason, exc.message), 401)
    response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


def _refuse_forbidden(actor: access.Actor, endpoint: str, reason: str,
                      message: str) -> Response:
    log.warning("authz_deny", reason=reason, endpoint=endpoint, key_id=actor.key_id,
                role=actor.role)
    record_refusal(Action.AUTHZ_DENY, "denied", actor, endpoint, reason=reason, details={})
    return error_response("forbidden", message, 403)


def _handle_forbidden(exc: access.Forbidden) -> Response:
    actor = _current_audit_actor()
    endpoint = request.endpoint or ""
    log.warning("authz_deny", reason="forbidden_by_service", endpoint=endpoint,
                key_id=actor.key_id, role=actor.role)
    record_refusal(Action.AUTHZ_DENY, "denied", actor, endpoint, reason="forbidden_by_service",
            details={k: v for k, v in exc.details.items() if isinstance(v, str)})
    return error_response(exc.code, exc.message, 403, details=exc.details)


def _handle_out_of_scope(exc: access.OutOfScope) -> Response:
    actor = _current_audit_actor()
    endpoint = request.endpoint or ""
    log.warning("authz_deny", reason="out_of_scope", endpoint=endpoint, key_id=actor.key_id,
                role=actor.role)
    record_refusal(Action.AUTHZ_DENY, "out_of_scope", actor, endpoint, reason="out_of_scope",
            details={k: v for k, v in exc.details.items() if isinstance(v, str)})
    # Exactly what a missing object gets: same status, code, message and details.
    return error_response(exc.code, exc.message, 404, details=exc.details)


_RECORDED = "faceapi_refusal_recorded"
_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _audit_other_refusals(response: Response) -> Response:
    """Any other 401/403 of the API (a service's own refusal, such as a reviewer deciding
    their own request) is audited too: every refusal leaves an event. The console
    records its own refusals (faceapi/entrypoints/web/console/access.py)."""
    if response.status_code not in (401, 403) or g.get(_RECORDED):
        return response
    rule = access.rule_for(request.endpoint)
    if request.endpoint is None or isinstance(rule, access.ConsolePage) or \
            rule is access.Access.CONSOLE:
        return response
    body = response.get_json(silent=True) if response.is_json else None
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    reason = code if isinstance(code, str) and _CODE_RE.match(code) else \
        f"http_{response.status_code}"
    actor = _current_audit_actor()
    action = Action.AUTH_FAIL if response.status_code == 401 else Action.AUTHZ_DENY
    log.warning("auth_fail" if response.status_code == 401 else "authz_deny", reason=reason,
                endpoint=request.endpoint, key_id=actor.key_id, role=actor.role)
    record_refusal(action, "denied", actor, request.endpoint or "", reason=reason, details={})
    return response


def _current_audit_actor() -> AuditActor:
    actor = getattr(g, "actor", None)
    return actor if isinstance(actor, AuditActor) else ANONYMOUS


def record_refusal(action: Action, outcome: str, actor: AuditActor, endpoint: str, *,
                   reason: str, details: dict[str, Any]) -> None:
    """Write one refusal to the audit trail in a transaction of its own (the request's
    own work, if any, has already rolled back). A failing write is logged, not raised:
    the caller is refused either way.

    Every value the client chose (path, method, ids in details) is normalised first, so
    no request can make this write fail and keep its refusal out of the trail; if the
    event is still refused by the schema, a stripped event is written instead."""
    g.setdefault(_RECORDED, True)
    safe_details: dict[str, Any] = {key: audit_safe_text(value, limit=128)
                                    if isinstance(value, str) else value
                                    for key, value in details.items()}
    safe_details["method"] = audit_safe_text(request.method, limit=16)
    safe_details["path"] = audit_safe_text(request.path, limit=200)
    event = AuditEvent(action=action, outcome=outcome, actor=actor,
                       resource=f"endpoint/{endpoint}" if endpoint else None,
                       # Server-made or checked by new_request_id (entrypoints/web/logging.py).
                       request_id=request_id() or None, reason=reason,
                       details=safe_details)
    try:
        validate_event(event)
    except InvalidAuditEvent as exc:
        # A value we did not foresee: the refusal is still recorded, without it.
        log.warning("auth_audit_stripped", action=action.value, error=str(exc)[:200])
        event = AuditEvent(action=action, outcome=outcome, actor=actor,
                           resource=f"endpoint/{endpoint}" if endpoint else None,
                           request_id=uuid.uuid4().hex,
                           reason=reason if _CODE_RE.match(reason) else "refused",
                           details={"withheld": "fields refused by the audit schema"})
    try:
        use_cases().record_audit_event(event)
    except Exception:
        log.exception("auth_audit_failed", action=action.value)


# What survives of a client-chosen string in an audit event: printable ASCII of the
# kinds URLs and ids use; anything else becomes "?".
_UNSAFE_CHARS_RE = re.compile(r"[^A-Za-z0-9._~:/@!$&'()*+,;=%-]")
WITHHELD = "[withheld]"


def audit_safe_text(value: str, *, limit: int) -> str:
    """A client-chosen string as an audit field may hold it: restricted to a safe
    charset and truncated; one that still looks like a key or encoded data (which the
    schema refuses, and which must not be stored anyway) is withheld entirely."""
    text = _UNSAFE_CHARS_RE.sub("?", value[:limit])
    try:
        check_text("value", text, limit=limit)
    except InvalidAuditEvent:
        return WITHHELD
    return text


SECURITY_SCHEME = "bearerAuth"
_CONVERTER_RE = re.compile(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")


# One description for every 403: the error body's code says which rule refused.
_FORBIDDEN_DESCRIPTION = (
    "refused: the key's role may not call this (`forbidden`), or a rule of the request "
    "refuses it, e.g. the policy is not bound to the collection (`policy_not_bound`), the "
    "key may not use the policy, the two-person rule (`reviewer_is_requester`, "
    "`owner_already_voted`), or the policy requires a liveness attestation that the "
    "route cannot carry (`liveness_unsupported`)")


def document_security(api: Any, app: Flask) -> None:
    """Put the bearer scheme and each operation's roles into /openapi.json, from the
    same table the hook enforces. Call last in create_app, after every blueprint."""
    api.spec.components.security_scheme(SECURITY_SCHEME, {
        "type": "http", "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer fa_<id>_<secret>`. Each operation "
                       "lists the roles that may call it (x-roles). Missing or invalid key: "
                       "401; a role not listed: 403; an object outside the key's scope: 404."})
    paths: dict[str, dict[str, Any]] = api.spec._paths  # apispec keeps registered paths here
    for rule in app.url_map.iter_rules():
        path = _CONVERTER_RE.sub(r"{\1}", rule.rule)
        operations = paths.get(path)
        if not operations:
            continue
        access_rule = access.rule_for(rule.endpoint)
        for method in rule.methods or ():
            operation = operations.get(method.lower())
            if not isinstance(operation, dict):
                continue
            if access_rule is access.Access.PUBLIC:
                operation["security"] = []
                operation["x-roles"] = ["public"]
                continue
            roles = sorted(access.roles_allowed(rule.endpoint), key=access.ROLES.index)
            operation["security"] = [{SECURITY_SCHEME: []}]
            operation["x-roles"] = roles
            note = f"Roles: {', '.join(roles) if roles else 'none (not in the permission table)'}."
            description = operation.get("description", "")
            if note not in description:
                operation["description"] = f"{description}\n\n{note}".strip()
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "missing, invalid, revoked or "
                                                        "expired API key"})
            responses.setdefault("403", {"description": _FORBIDDEN_DESCRIPTION})
            responses.setdefault("429", {"description": "rate limit exceeded; see Retry-After"})
            if "requestBody" in operation:
                # The nesting guard (api/deps.py) answers before any parser on every body.
                responses.setdefault("400", {"description": "the body is not readable: JSON "
                                                            "nested deeper than 64 levels"})

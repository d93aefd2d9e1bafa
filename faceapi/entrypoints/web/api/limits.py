"""Rate limits (Flask-Limiter): per client address, and per verified API key; tighter
on verify.

Counts live in memory by default (per process) and in Redis when `FACEAPI_REDIS_URL`
is set, so every gunicorn worker and host shares them. Two limiters, two moments:
- before authentication, per client address only: a flood of guessed or forged keys
  is limited per address before it costs a store lookup or an audit write;
- after authentication, per key, named by the id of the key whose secret was just
  verified. Key ids are public (lists, audit trail), so a bucket chosen from the id in
  the header would let anyone spend another app's budget with forged requests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import structlog
from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limit, Limiter, RateLimitExceeded, RequestLimit
from limits import parse_many

from faceapi.config import ConfigError, Settings
from faceapi.domain import access
from faceapi.entrypoints.web.api.errors import error_response

log = structlog.get_logger(__name__)

LIMITER_KEY = "faceapi_limiter"
# A Redis that holds the connection but never answers (stopped, partitioned) must cost a
# request a bounded wait, after which the limiter counts in memory (the fallback below);
# redis-py waits forever by default. Redis answers a loopback or LAN call in well under
# a millisecond. tests/faults/test_redis_down.py measures it.
# (Any: Flask-Limiter's hint says str | int, but redis-py takes float seconds.)
REDIS_OPTIONS: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
# Routes whose attempts are guesses at a face: brute force there is what the tighter
# `rate_limit_verify` budget (and the per-subject lockout) is for.
TIGHT_RULES = frozenset({"/v1/verify"})


def client_address() -> str:
    # The direct peer. Behind a proxy, deploy werkzeug's ProxyFix with the real hop
    # count; X-Forwarded-For is never trusted here because a client can forge it.
    return request.remote_addr or "unknown"


def _verified_key_id() -> str | None:
    """The id of the key api/auth.py authenticated for this request, if any. Console
    sessions set an actor too, but their pages are limited per address as before."""
    actor = getattr(g, "actor", None)
    key_id = getattr(actor, "key_id", None)
    if not isinstance(key_id, str) or not key_id:
        return None
    rule = access.rule_for(request.endpoint)
    if isinstance(rule, (access.Access, access.ConsolePage)):
        return None
    return key_id


def key_bucket() -> str:
    """The per-key bucket: the verified key's id (never the id a request claims)."""
    return f"key:{_verified_key_id()}"


def _not_verified() -> bool:
    return _verified_key_id() is None


def address_bucket() -> str:
    return f"addr:{client_address()}"


def _exempt() -> bool:
    # Probes and docs: a load balancer polling /healthz must never be throttled.
    return access.rule_for(request.endpoint) is access.Access.PUBLIC


def _not_tight() -> bool:
    rule = request.url_rule
    return rule is None or rule.rule not in TIGHT_RULES


def _not_verified_or_not_tight() -> bool:
    return _not_verified() or _not_tight()


def _on_breach(limit: RequestLimit) -> None:
    # request_args = [key prefix, bucket, scope]; the bucket holds a key id or an address.
    bucket = limit.request_args[-2] if len(limit.request_args) >= 2 else None
    log.warning("rate_limited", limit=str(limit.limit), endpoint=request.endpoint,
                bucket=bucket)


def _breached_limit() -> RequestLimit | None:
    # Either limiter may have refused the request; the one that did holds the details.
    limiters: tuple[Limiter, ...] = current_app.extensions[LIMITER_KEY]
    for limiter in limiters:
        current = limiter.current_limit
        if current is not None and current.breached:
            return current
    return None


def _too_many_requests(exc: RateLimitExceeded) -> Response:
    """429 in our envelope, with Retry-After: when the oldest counted request leaves
    the window of the limit that was hit."""
    current = _breached_limit()
    retry_after = 60
    headers: dict[str, str] = {}
    if current is not None:
        reset_at = current.reset_at
        # reset_at is rounded up to the next second; never ask for more than a window.
        retry_after = max(1, min(current.limit.get_expiry(), math.ceil(reset_at - time.time())))
        headers = {"X-RateLimit-Limit": str(current.limit.amount),
                   "X-RateLimit-Remaining": str(current.remaining),
                   "X-RateLimit-Reset": str(reset_at)}
    response = error_response("rate_limited",
                              f"rate limit exceeded ({exc.description}); retry in "
                              f"{retry_after} s", 429, retry_after=retry_after)
    response.headers.update(headers)
    return response


def _limiter(app: Flask, settings: Settings, *,
             application_limits: list[str | Callable[[], str] | ApplicationLimit],
             default_limits: list[str | Callable[[], str] | Limit]) -> Limiter:
    limiter = Limiter(
        client_address,
        application_limits=application_limits,
        default_limits=default_limits,
        storage_uri=settings.redis_url or "memory://",
        storage_options=REDIS_OPTIONS if settings.redis_url else {},
        # Moving window: no double burst at a window edge, which matters for verify.
        strategy="moving-window",
        # No X-RateLimit-* on every response: that costs one more storage round trip
        # per request (a Redis call); the 429 carries Retry-After and the limit instead.
        headers_enabled=False,
        # Redis down: count in this process's memory until it is back (checked with
        # backoff) rather than fail every request or stop limiting.
        in_memory_fallback_enabled=bool(settings.redis_url),
        key_prefix="faceapi",
        on_breach=_on_breach,
    )
    # init_app registers the limiter's before_request hook: where it runs relative to
    # the auth hook is what decides which buckets may be trusted.
    limiter.init_app(app)
    app.extensions[LIMITER_KEY] = (*app.extensions.get(LIMITER_KEY, ()), limiter)
    return limiter


def init_limiter(app: Flask, settings: Settings) -> Limiter:
    """The per-address limits; call before the auth hook is registered, so guessed and
    forged keys are limited before any store work."""
    for name in ("rate_limit_default", "rate_limit_verify"):
        value = getattr(settings, name)
        try:
            parse_many(value)
        except ValueError as exc:
            # Flask-Limiter parses lazily: a typo would otherwise fail every request.
            raise ConfigError(f"FACEAPI_{name.upper()}: expected e.g. 600/minute or "
                              f"10/second;100/hour, got {value!r}") from exc
    limiter = _limiter(
        app, settings,
        # Shared across every endpoint: one budget per address.
        application_limits=[ApplicationLimit(settings.rate_limit_default,
                                             key_function=address_bucket, scope="address",
                                             exempt_when=_exempt)],
        default_limits=[Limit(settings.rate_limit_verify, key_function=address_bucket,
                              scope="address", exempt_when=_not_tight)])
    app.register_error_handler(RateLimitExceeded, _too_many_requests)
    log.info("rate_limits", storage="redis" if settings.redis_url else "memory",
             default=settings.rate_limit_default, verify=settings.rate_limit_verify)
    return limiter


def init_key_limits(app: Flask, settings: Settings) -> Limiter:
    """The per-key limits; call after the auth hook is registered, so they count only
    requests whose key was verified (a refused key never reaches them)."""
    return _limiter(
        app, settings,
        # Shared across every endpoint: one budget per verified key.
        application_limits=[ApplicationLimit(settings.rate_limit_default,
                                             key_function=key_bucket, scope="key",
                                             exempt_when=_not_verified)],
        default_limits=[Limit(settings.rate_limit_verify, key_function=key_bucket,
                              exempt_when=_not_verified_or_not_tight)])

"""Rate limits (Flask-Limiter): per API key and per client address, tighter on verify.

Counts live in memory by default (per process) and in Redis when `FACEAPI_REDIS_URL`
is set, so every gunicorn worker and host shares them. The limiter runs before the
auth hook: a flood of guessed keys is limited per address before it costs a store
lookup or an audit write. The per-key bucket is named by the key's public id taken
from the header unverified; that is safe because a forged id only moves the caller
into another key's bucket, while its address bucket still counts every request.
"""

from __future__ import annotations

import math
import time

import structlog
from flask import Flask, Response, current_app, request
from flask_limiter import ApplicationLimit, Limit, Limiter, RateLimitExceeded, RequestLimit
from limits import parse_many

from faceapi.api.auth import presented_key
from faceapi.api.errors import error_response
from faceapi.config import ConfigError, Settings
from faceapi.domain import access
from faceapi.services.keys import key_id_of

log = structlog.get_logger(__name__)

LIMITER_KEY = "faceapi_limiter"
# Routes whose attempts are guesses at a face: brute force there is what the tighter
# `rate_limit_verify` budget (and the per-subject lockout) is for.
TIGHT_RULES = frozenset({"/v1/verify"})


def client_address() -> str:
    # The direct peer. Behind a proxy, deploy werkzeug's ProxyFix with the real hop
    # count; X-Forwarded-For is never trusted here because a client can forge it.
    return request.remote_addr or "unknown"


def key_bucket() -> str:
    """The per-key bucket: the key's public id, or the address for keyless calls."""
    token = presented_key()
    key_id = key_id_of(token) if token else None
    return f"key:{key_id}" if key_id else f"addr:{client_address()}"


def address_bucket() -> str:
    return f"addr:{client_address()}"


def _exempt() -> bool:
    # Probes and docs: a load balancer polling /healthz must never be throttled.
    return access.rule_for(request.endpoint) is access.Access.PUBLIC


def _not_tight() -> bool:
    rule = request.url_rule
    return rule is None or rule.rule not in TIGHT_RULES


def _on_breach(limit: RequestLimit) -> None:
    # request_args = [key prefix, bucket, scope]; the bucket holds a key id or an address.
    bucket = limit.request_args[-2] if len(limit.request_args) >= 2 else None
    log.warning("rate_limited", limit=str(limit.limit), endpoint=request.endpoint,
                bucket=bucket)


def _too_many_requests(exc: RateLimitExceeded) -> Response:
    """429 in our envelope, with Retry-After: when the oldest counted request leaves
    the window of the limit that was hit."""
    limiter: Limiter = current_app.extensions[LIMITER_KEY]
    current = limiter.current_limit
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


def init_limiter(app: Flask, settings: Settings) -> Limiter:
    """Attach the limiter; call before the auth hook is registered."""
    for name in ("rate_limit_default", "rate_limit_verify"):
        value = getattr(settings, name)
        try:
            parse_many(value)
        except ValueError as exc:
            # Flask-Limiter parses lazily: a typo would otherwise fail every request.
            raise ConfigError(f"FACEAPI_{name.upper()}: expected e.g. 600/minute or "
                              f"10/second;100/hour, got {value!r}") from exc
    storage_uri = settings.redis_url or "memory://"
    limiter = Limiter(
        client_address,
        application_limits=[
            # Shared across every endpoint: one budget per key, one per address.
            ApplicationLimit(settings.rate_limit_default, key_function=key_bucket,
                             scope="key", exempt_when=_exempt),
            ApplicationLimit(settings.rate_limit_default, key_function=address_bucket,
                             scope="address", exempt_when=_exempt),
        ],
        default_limits=[
            Limit(settings.rate_limit_verify, key_function=key_bucket, exempt_when=_not_tight),
            Limit(settings.rate_limit_verify, key_function=address_bucket,
                  scope="address", exempt_when=_not_tight),
        ],
        storage_uri=storage_uri,
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
    limiter.init_app(app)
    app.extensions[LIMITER_KEY] = limiter
    app.register_error_handler(RateLimitExceeded, _too_many_requests)
    log.info("rate_limits", storage="redis" if settings.redis_url else "memory",
             default=settings.rate_limit_default, verify=settings.rate_limit_verify)
    return limiter

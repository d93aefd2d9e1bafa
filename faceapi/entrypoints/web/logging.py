"""structlog set-up (once, before the app exists), request ids and redaction.

Logs never carry image bytes, embeddings or API keys: the redactor drops such keys
and replaces long opaque strings before a line is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog

from faceapi.config import Settings
from faceapi.domain.audit import InvalidAuditEvent, check_text

_REDACTED_KEYS = re.compile(
    r"(image|embedding|descriptor|vector|api_key|apikey|authorization|secret|password"
    r"|token|bytes|chip|pixels)",
    re.IGNORECASE)
_ALLOWED_SUFFIXES = ("_sha256", "_digest", "_count", "_id", "_prefix", "_bytes_len")
_KEY_LIKE = re.compile(r"fa_[A-Za-z0-9]{6,}_[A-Za-z0-9_-]{20,}")
_LONG_OPAQUE = re.compile(r"[A-Za-z0-9+/=_-]{200,}")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _is_secret_key(key: str) -> bool:
    return bool(_REDACTED_KEYS.search(key)) and not key.endswith(_ALLOWED_SUFFIXES)


def _is_vector(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 16 and all(
        isinstance(v, float) for v in value)


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop biometric and secret values from a log event."""
    for key in list(event.keys()):
        value = event[key]
        if _is_secret_key(key) or _is_vector(value):
            event[key] = "[redacted]"
        elif isinstance(value, str):
            cleaned = _KEY_LIKE.sub("[redacted-key]", value)
            event[key] = _LONG_OPAQUE.sub("[redacted-blob]", cleaned)
    return event


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the stdlib root logger. Safe to call more than once."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    renderer: Any
    if settings.resolved_log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Look sys.stderr up per logger, not once: test capture and gunicorn both
        # replace the stream after configuration.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s", force=True)
    # werkzeug's own access log would duplicate our request line without the request id.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def new_request_id(incoming: str | None) -> str:
    """Keep a caller's well-formed X-Request-ID, else make one.

    The id goes into every audit event of the request, refusals included, so a value
    the audit schema would refuse (a key-shaped `fa_...`, a long mixed-case run that
    looks like encoded data) must never get this far: such a write would fail and the
    refusal would go unrecorded. Those values are replaced, never stored or logged."""
    if incoming and _REQUEST_ID.match(incoming) and _audit_safe(incoming):
        return incoming
    return uuid.uuid4().hex


def _audit_safe(value: str) -> bool:
    try:
        check_text("request_id", value, limit=64)
    except InvalidAuditEvent:
        return False
    return True


def bind_request(request_id: str, **values: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, **values)

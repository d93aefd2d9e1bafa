"""The Rekognition-compatible endpoint: `POST /` with `X-Amz-Target:
RekognitionService.<Operation>` and an `application/x-amz-json-1.1` body, so
`boto3.client("rekognition", endpoint_url=...)` works against faceapi unchanged.

Every error leaves this blueprint in Rekognition's shape (`__type`, `message`), never
in our REST envelope, because SDKs parse errors by `__type`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import structlog
from flask import Blueprint, Response, current_app, g, json, request
from werkzeug.exceptions import HTTPException

from faceapi.domain import access
from faceapi.domain.audit import Actor
from faceapi.domain.errors import FaceApiError
from faceapi.entrypoints.web.api.deps import (
    container,
    current_actor,
    json_body,
    request_id,
    use_cases,
)
from faceapi.entrypoints.web.emulator import protocol as p
from faceapi.entrypoints.web.emulator.collections import StoreCollections
from faceapi.entrypoints.web.emulator.operations import HANDLERS, OperationContext

log = structlog.get_logger(__name__)

CONTROL_KEY = "faceapi.entrypoints.web.emulator"

blp = Blueprint("rekognition", __name__)


@dataclass
class _Fault:
    operation: str | None
    error: str
    status: int


@dataclass
class EmulatorControl:
    """Test switch: make the next calls fail with a given Rekognition error (throttling
    by default), to exercise SDK retries and our error mapping. Refused outside
    `FACEAPI_ENV=test`, so production can never be told to fail on purpose."""

    enabled: bool
    _faults: list[_Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, error: str = "ThrottlingException", *, times: int = 1,
               operation: str | None = None, status: int = 400) -> None:
        if not self.enabled:
            raise RuntimeError("fault injection is only available when FACEAPI_ENV=test")
        with self._lock:
            self._faults.extend(_Fault(operation, error, status) for _ in range(times))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, operation: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.operation in (None, operation):
                    return self._faults.pop(i)
        return None


def control(app: Any = None) -> EmulatorControl:
    """The app's emulator control (the current app's by default)."""
    value: EmulatorControl = (app or current_app).extensions[CONTROL_KEY]
    return value


def init_app(app: Any, *, enabled_faults: bool) -> None:
    """Register the blueprint and its control on `app` (called by create_app)."""
    app.extensions[CONTROL_KEY] = EmulatorControl(enabled=enabled_faults)
    app.register_blueprint(blp)
    # App-level, not the blueprint's: Flask runs app hooks in reverse order of
    # registration and after the blueprint's, so this one sees the finished response,
    # headers added later by the rate limiter (Retry-After) included.
    app.after_request(_as_aws_error)


@blp.route("/", methods=["POST"])
def dispatch() -> Response:
    """Rekognition JSON 1.1 endpoint (AWS SDKs)."""
    operation = "unknown"
    try:
        operation = p.operation_from_target(request.headers.get("X-Amz-Target"))
        handler = HANDLERS.get(operation)
        if handler is None:
            raise p.AwsError("UnknownOperationException",
                             f"{operation} is not supported by the faceapi emulator")
        if request.mimetype != p.CONTENT_TYPE:
            raise p.AwsError("SerializationException",
                             f"Content-Type must be {p.CONTENT_TYPE}")
        actor = authorize(operation)
        fault = control().take(operation)
        if fault is not None:
            raise p.AwsError(fault.error, "injected by the test switch", fault.status)
        body = json_body(force=True)
        if not isinstance(body, dict):
            raise p.AwsError("SerializationException", "the body must be a JSON object")
        ctx = OperationContext(settings=container().settings, use_cases=use_cases(),
                               actor=actor,
                               collections=lambda consent: _collections(actor, consent))
        result = handler(body, ctx)
        log.info("emulator_call", operation=operation, status=200)
        response = _json(result, 200)
        response.headers.extend(ctx.response_headers)
        return response
    except p.AwsError as exc:
        return _error(operation, exc)
    except (access.Forbidden, access.OutOfScope):
        # api/auth.py's handlers audit these refusals; `_as_aws_error` reshapes them.
        raise
    except FaceApiError as exc:
        return _error(operation, p.aws_error_from(exc))
    except HTTPException as exc:
        if exc.code == 413:
            return _error(operation, p.AwsError("ImageTooLargeException", "request too large"))
        return _error(operation, p.AwsError("InvalidParameterException",
                                            str(exc.description or exc.name),
                                            exc.code or 400))
    except Exception:
        log.exception("emulator_unhandled_error", operation=operation)
        return _error(operation, p.AwsError("InternalServerError", "internal server error",
                                            500))


def _collections(actor: Actor, consent_required: bool) -> StoreCollections:
    """The collection port over our store, acting for this request's caller."""
    return StoreCollections(use_cases=use_cases(), actor=actor,
                            request_id=request_id() or None,
                            consent_required=consent_required)


def authorize(operation: str) -> Actor:
    """The caller, authenticated by api/auth.py from the request's SigV4 signature
    (entrypoints/web/api/sigv4.py; access key id = the API key's id, secret = its SigV4
    secret, see docs/engines.md), if its role may call this operation."""
    actor = current_actor()
    access.require_role(actor, access.REKOGNITION_OPERATIONS.get(operation, frozenset()))
    return actor


def _as_aws_error(response: Response) -> Response:
    """Refusals made before or around the view (401 from the auth hook, 403/404 from
    its audited handlers, 429 from the rate limiter, 413 from werkzeug) come out in our
    REST envelope; SDKs need Rekognition's shape, so reshape them here."""
    if request.blueprint != blp.name or response.status_code < 400 or \
            response.mimetype != "application/json":
        return response
    body = response.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return response
    code = str(error.get("code", ""))
    message = str(error.get("message", ""))
    if response.status_code == 429:
        retry_after = response.headers.get("Retry-After", "")
        aws = p.aws_error("engine_throttled", message or "rate limit exceeded",
                          int(retry_after) if retry_after.isdigit() else None)
    else:
        aws = p.aws_error(code, message)
    reshaped = _error(request.headers.get("X-Amz-Target", "unknown"), aws)
    for name in ("X-Request-ID", "Retry-After"):
        if name in response.headers:
            reshaped.headers[name] = response.headers[name]
    return reshaped


def _json(payload: dict[str, Any], status: int) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype=p.CONTENT_TYPE)
    response.headers["x-amzn-RequestId"] = str(getattr(g, "request_id", ""))
    return response


def _error(operation: str, exc: p.AwsError) -> Response:
    log.info("emulator_error", operation=operation, type=exc.type, status=exc.status)
    response = _json(exc.body(), exc.status)
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response

"""The one place where error codes become HTTP statuses and the JSON error envelope.

Every error response, including unknown routes and methods, is
`{"error": {"code", "message", "request_id"}}` (plus `details` when useful).
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Flask, Response, g, jsonify
from marshmallow import Schema, ValidationError, fields
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from faceapi.domain.errors import FaceApiError

log = structlog.get_logger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "validation_error": 422,
    "missing_image": 422,
    "invalid_parameter": 422,
    "image_too_large": 413,
    "image_too_many_pixels": 413,
    "unsupported_image_format": 415,
    "invalid_image": 422,
    "no_face_in_source": 422,
    "not_found": 404,
    "unauthorized": 401,
    "forbidden": 403,
    "rate_limited": 429,
    "conflict": 409,
    "collection_exists": 409,
    "consent_required": 422,
    "engine_mismatch": 409,
    "engine_unavailable": 503,
    "engine_throttled": 503,
    "engine_access_denied": 502,
    "store_unavailable": 503,
    "blob_store_unavailable": 503,
    "locked": 423,
    "unknown_policy": 422,
    "wrong_policy_operation": 422,
    "invalid_policy_binding": 422,
    "policy_not_bound": 403,
    "liveness_unsupported": 403,  # a route that cannot carry a liveness attestation
    "review_not_found": 404,
    "decision_not_found": 404,
    "reviewer_is_requester": 403,
    "already_voted": 409,
    # 403, not 409: a second key of the same person is a way around the two-person
    # rule, a refusal the audit trail must hold (api/auth.py audits 401/403).
    "owner_already_voted": 403,
    "review_closed": 409,
    "unknown_candidate": 422,
    # Idempotency-Key (api/idempotency.py)
    "invalid_idempotency_key": 400,
    "idempotency_key_reused": 422,
    "idempotency_in_progress": 409,
    "idempotency_response_unavailable": 409,
    "webhook_url_refused": 422,
    "multiple_faces": 422,  # enrollment of a group photo where the collection refuses it
    "webhook_not_found": 404,
}

# Stable codes for plain HTTP errors (routing, method, body size ...).
CODE_BY_HTTP_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    423: "locked",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ValidationFailed(FaceApiError):
    code = "validation_error"


class ErrorBodySchema(Schema):
    code = fields.String(required=True,
                         metadata={"description": "stable snake_case code (docs/api.md)"})
    message = fields.String(required=True)
    request_id = fields.String(required=True, allow_none=True,
                               metadata={"description": "also in the X-Request-ID header"})
    details = fields.Dict(metadata={"description": "what the code needs said, e.g. the "
                                                   "fields that failed validation"})


class ErrorSchema(Schema):
    """What /openapi.json says every error response is (api/openapi_doc.py)."""

    error = fields.Nested(ErrorBodySchema, required=True)


def error_response(code: str, message: str, status: int, *,
                   details: dict[str, Any] | None = None,
                   retry_after: int | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message,
                            "request_id": getattr(g, "request_id", None)}
    if details:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _handle_faceapi_error(exc: FaceApiError) -> Response:
    status = STATUS_BY_CODE.get(exc.code, 400)
    log.info("request_error", code=exc.code, status=status)
    return error_response(exc.code, exc.message, status, details=exc.details,
                          retry_after=exc.retry_after)


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = CODE_BY_HTTP_STATUS.get(status, "http_error")
    details: dict[str, Any] | None = None
    data = getattr(exc, "data", None)  # smorest/webargs put field messages here
    if isinstance(data, dict) and data.get("messages"):
        details = {"fields": data["messages"]}
    message = exc.description or exc.name
    response = error_response(code, str(message), status, details=details)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        # RFC 9110: a 405 names the methods the resource does allow.
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _handle_validation_error(exc: ValidationError) -> Response:
    fields: Any = exc.normalized_messages()  # type: ignore[no-untyped-call]
    return error_response("validation_error", "the request is not valid", 422,
                          details={"fields": fields})


def _handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _handle_http_exception(exc)
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return error_response("internal_error", "an internal error occurred", 500)


def register_error_handlers(app: Flask) -> None:
    """Register after flask-smorest's Api so ours replace its HTTPException handler."""
    app.register_error_handler(FaceApiError, _handle_faceapi_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(ValidationError, _handle_validation_error)
    app.register_error_handler(Exception, _handle_unexpected)
